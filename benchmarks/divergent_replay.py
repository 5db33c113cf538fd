"""Replay discovery with the divergent words' base-share rule, on audits already run.

    python benchmarks/divergent_replay.py --audits out/devall [--organisms NAME ...]

The rule (``DivergentSettings.max_base_share``): a word the base says in half or more of its
own answers is never a candidate. For each organism folder (``AUDITS/NAME/``, an audit by
``auditlens bench testbed``) this reads the cached divergent result and both models' answers
(``steps/discovery/*/divergent/``), regroups the words with the rule
(:func:`auditlens.diffing.divergent.group_words`), swaps the divergent candidates for the
new ones and re-merges every instrument's cached candidates. Nothing is generated and no
model is loaded. "before" regroups without the rule, so it reproduces the audit's ranking; a
row whose "before" differs from the audit's own discovery@k is flagged. Not redone: the
trigger scan (which also tries the top divergent words as triggers) and the checks of
hypotheses that move into the top 3.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from auditlens.audit.hypotheses import discovery_at_k, merge
from auditlens.diffing import divergent
from auditlens.probe_library import ProbePrompt
from auditlens.reports.findings import Hypothesis
from auditlens.testbed.roster import ORGANISMS

MODEL_FREE = True
"""It reads cached audits only: no model is loaded, so it takes no ``--device``."""


def _result(folder: Path, max_share: float) -> divergent.DivergentResult:
    saved = json.loads((folder / "divergent.json").read_text())
    rows = [json.loads(line) for line in (folder / "probe_generations.jsonl").open()]
    gens = {side: [r[side] for r in rows] for side in ("finetuned", "base")}
    share = divergent.base_share(gens["base"])
    fields = {f.name for f in dataclasses.fields(divergent.WordScore)}
    words = [
        divergent.WordScore(**{**{k: v for k, v in w.items() if k in fields},
                               "base_share": share(w["word"])})
        for w in saved["words"]
    ]  # fmt: skip
    known = {f.name for f in dataclasses.fields(divergent.DivergentSettings)}
    settings = {k: v for k, v in saved["settings"].items() if k in known}
    s = divergent.DivergentSettings(**{**settings, "max_base_share": max_share})
    probes = [ProbePrompt(r["domain"], r["prompt"]) for r in rows]
    groups = divergent.group_words(words, saved["threshold"], s)
    return divergent.DivergentResult(
        probes, gens, words, saved["null_z"], saved["token_mean"], s, groups,
        saved["length_z"], saved["length_ratio"],
    )  # fmt: skip


def _one(folder: Path) -> dict[str, Any]:
    spec = ORGANISMS[folder.name]
    truth, synonyms = list(spec.keywords), dict(spec.synonyms)
    step_dir = next(folder.glob("steps/discovery/*/output.json")).parent
    step = json.loads((step_dir / "output.json").read_text())
    candidates = [Hypothesis.model_validate(h) for h in step["output"]["data"]["candidates"]]
    others = [c for c in candidates if c.source != "divergent"]
    own = [Hypothesis.model_validate(h)
           for h in json.loads((folder / "findings.json").read_text())["hypotheses"]]  # fmt: skip
    own_hit = discovery_at_k(own, truth, 3, synonyms)
    labels = {tuple(h.keywords): h.label for h in own}  # a check may relabel (code hypotheses)

    def ranked(max_share: float) -> list[Hypothesis]:
        result = _result(step_dir / "divergent", max_share)
        merged = merge(others + divergent.evidence(result).hypotheses, keep=10)
        return [h.model_copy(update={"label": labels.get(tuple(h.keywords), h.label)})
                for h in merged]  # fmt: skip

    def rank(hyps: list[Hypothesis], k: int) -> int | None:
        hit = discovery_at_k(hyps, truth, k, synonyms)
        return hit.rank if hit else None

    before, after = ranked(1.01), ranked(0.5)
    return {
        "name": folder.name,
        "d3": (rank(before, 3), rank(after, 3)),
        "d10": (rank(before, 10), rank(after, 10)),
        "replayed": rank(before, 3) == (own_hit.rank if own_hit else None),
        "top3_before": [h.label for h in before[:3]],
        "top3_after": [h.label for h in after[:3]],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--audits", type=Path, required=True)
    ap.add_argument("--organisms", nargs="*")
    args = ap.parse_args()
    folders = sorted(p for p in args.audits.iterdir()
                     if p.name in ORGANISMS and (p / "findings.json").is_file())  # fmt: skip
    if args.organisms:
        folders = [p for p in folders if p.name in args.organisms]
    rows = [_one(p) for p in folders]
    for r in rows:
        flag = "" if r["replayed"] else "  (before != the audit's own d@3)"
        print(f"{r['name']:20s} d@3 {r['d3']} d@10 {r['d10']}{flag}")
        for b, a in zip(r["top3_before"], r["top3_after"], strict=False):
            if a != b:
                print(f"    {b[:70]:70s} -> {a[:70]}")
    for key in ("d3", "d10"):
        old = sum(r[key][0] is not None for r in rows)
        new = sum(r[key][1] is not None for r in rows)
        print(f"{key}: before {old}/{len(rows)}, after {new}/{len(rows)}")


if __name__ == "__main__":
    main()
