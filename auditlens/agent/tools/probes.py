"""Probe tools: score texts with a shipped (or workspace) probe scorer."""

from __future__ import annotations

from typing import Any

from auditlens.agent import schemas as s
from auditlens.agent.tools._base import ToolInputError, ToolkitBase, ToolSpec, cap
from auditlens.probes.scorer import load_scorer

__all__ = ["SPECS", "ProbeTools"]


class ProbeTools(ToolkitBase):
    """``probe_score``."""

    def _scorer(self, kind: str, side: str) -> Any:
        key = ("scorer", kind, side)
        if key not in self._memo:
            local = self.workspace.root / "probes" / f"scorer_{kind}"
            path = local if local.with_suffix(".json").is_file() else None
            self._memo[key] = load_scorer(
                kind,
                self.pair,
                side=side,  # type: ignore[arg-type]
                path=path,
                allow_mismatch=side == "finetuned",
                batch_size=self.limits.batch_size,
            )
        return self._memo[key]

    def probe_score(self, args: s.ProbeScoreInput) -> s.ProbeScoreOutput:
        """Score texts with a shipped probe scorer against its calibrated threshold."""
        cap("number of texts", len(args.texts), self.limits.max_texts)
        for t in args.texts:
            self._text("text", t)
        if args.prompts is not None and len(args.prompts) != len(args.texts):
            raise ToolInputError(f"{len(args.texts)} texts but {len(args.prompts)} prompts")
        self._side(args.side)
        with self._lock:
            scorer = self._scorer(args.kind, args.side)
            scores = scorer.score(list(args.texts), args.prompts)
        threshold = float(scorer.threshold)
        rows = [
            s.ProbeScoreRow(text=t[:200], score=float(v), flagged=bool(v > threshold))
            for t, v in zip(args.texts, scores.tolist(), strict=True)
        ]
        fpr = scorer.probe.target_fpr
        null = (
            f"The threshold is calibrated to a false-positive rate of at most "
            f"{fpr if fpr is not None else 'n/a'} on ordinary answers (the control set)."
        )
        if args.side == "finetuned":
            null += " Read through the fine-tuned model: the probe was trained on the base."
        return s.ProbeScoreOutput(
            kind=args.kind,
            side=args.side,
            site=scorer.probe.site,
            threshold=threshold,
            target_fpr=fpr,
            rows=rows,
            n_flagged=sum(r.flagged for r in rows),
            null_control=null,
        )


SPECS = (
    ToolSpec(
        "probe_score",
        s.ProbeScoreInput,
        s.ProbeScoreOutput,
        "probe_score",
        "Score texts with a probe scorer (vulnerable_code or misaligned_answer) against "
        "its calibrated threshold.",
    ),
)
