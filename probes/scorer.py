"""Specialist probe scorers: read any text through a model and score it with a shipped probe.

Two kinds ship as package data (trained on the embedded SmolLM2-135M-Instruct):
``vulnerable_code`` (insecure vs secure code answers) and ``misaligned_answer`` (misaligned vs
aligned free-form answers). Each has a threshold calibrated to at most 1% false positives on
its control set of ordinary answers. A scorer reads texts as the assistant turn of a chat
(after the prompt when one is given) and aggregates the probe's site over the answer tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Bool, Float

from auditlens.datasets import Prompt, PromptSet
from auditlens.errors import AuditlensError
from auditlens.judges.code import bandit_labels
from auditlens.models import ModelPair, load_pair
from auditlens.probes.features import SideChoice, read_features
from auditlens.probes.pairsets import DATA_PACKAGE
from auditlens.probes.probe import LinearProbe, load_probe
from auditlens.stats import auroc, bootstrap_ci, win_rate

__all__ = [
    "EMPTY_ANSWER",
    "SCORER_KINDS",
    "BanditAgreement",
    "ProbeScorer",
    "bandit_agreement",
    "load_scorer",
    "scorer_path",
]

ScorerKind = Literal["vulnerable_code", "misaligned_answer"]
SCORER_KINDS: tuple[str, ...] = ("vulnerable_code", "misaligned_answer")
EMPTY_ANSWER = "(no answer)"
"""Stand-in for empty texts, which have no answer tokens to read."""


def _chat(text: str, prompt: str | Prompt | None) -> tuple[tuple[str, str], ...]:
    answer = text.strip() or EMPTY_ANSWER
    if prompt is None:
        return (("assistant", answer),)
    if isinstance(prompt, str):
        return (("user", prompt), ("assistant", answer))
    if prompt.messages is None:
        raise AuditlensError("scorer prompts must be chat prompts or strings, not raw text")
    return (*prompt.messages, ("assistant", answer))


@dataclass
class ProbeScorer:
    """A probe applied to texts read through one side of a model pair."""

    kind: str
    probe: LinearProbe
    pair: ModelPair
    side: SideChoice = "base"
    batch_size: int = 8
    backend: str = "torch"

    @property
    def threshold(self) -> float:
        if self.probe.threshold is None:
            raise AuditlensError(f"scorer {self.kind} has no calibrated threshold")
        return self.probe.threshold

    def score(
        self,
        texts: Sequence[str],
        prompts: Sequence[str | Prompt | None] | None = None,
        *,
        progress: bool = False,
    ) -> Float[np.ndarray, " n"]:
        """One score per text (higher = more ``kind``); ``prompts`` give each text's request."""
        if isinstance(texts, str):
            raise AuditlensError("score() takes a list of texts, not one string")
        if not texts:
            return np.zeros(0)
        if prompts is not None and len(prompts) != len(texts):
            raise AuditlensError(f"{len(texts)} texts but {len(prompts)} prompts")
        chats = [
            Prompt(messages=_chat(t, None if prompts is None else prompts[i]))
            for i, t in enumerate(texts)
        ]
        feats = read_features(
            self.pair, PromptSet(f"score_{self.kind}", tuple(chats)), [self.probe.site],
            side=self.side, aggregations=(self.probe.aggregation,), mask=self.probe.mask,
            question=self.probe.question, batch_size=self.batch_size,
            backend=self.backend, progress=progress,
        )  # fmt: skip
        x = feats.get(feats.sites[0], self.probe.aggregation)
        return self.probe.score(x).to(torch.float64).numpy()

    def flag(
        self, texts: Sequence[str], prompts: Sequence[str | Prompt | None] | None = None
    ) -> Bool[np.ndarray, " n"]:
        """Whether each text scores above the calibrated threshold."""
        return self.score(texts, prompts) > self.threshold

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "side": self.side, "probe": self.probe.to_json()}


def scorer_path(kind: str) -> Path:
    """The shipped probe files of a scorer kind (``<path>.safetensors`` + ``<path>.json``)."""
    if kind not in SCORER_KINDS:
        raise AuditlensError(f"unknown scorer {kind!r}; choose {', '.join(SCORER_KINDS)}")
    ref = resources.files(DATA_PACKAGE).joinpath(f"scorer_{kind}.json")
    return Path(str(ref)).with_suffix("")


def load_scorer(
    kind: str,
    pair: ModelPair | None = None,
    *,
    side: SideChoice = "base",
    path: str | Path | None = None,
    allow_mismatch: bool = False,
    batch_size: int = 8,
) -> ProbeScorer:
    """Load a shipped (or saved, via ``path``) scorer onto one side of ``pair``.

    ``pair`` defaults to the embedded model. A side whose weights differ from those the probe
    was trained on raises :class:`~auditlens.probes.probe.ProbeMismatchError`, or only warns
    with ``allow_mismatch=True`` (reading through a fine-tuned model on purpose).
    """
    if kind not in SCORER_KINDS:
        raise AuditlensError(f"unknown scorer {kind!r}; choose {', '.join(SCORER_KINDS)}")
    if pair is None:
        pair = load_pair()
    model_side = pair.base if side == "base" else pair.finetuned
    probe = load_probe(
        path or scorer_path(kind),
        model_sha256=model_side.fingerprint,
        allow_mismatch=allow_mismatch,
    )
    if probe.d_model != pair.d_model:
        raise AuditlensError(
            f"scorer {kind} has width {probe.d_model} but the model has d_model {pair.d_model}"
        )
    return ProbeScorer(kind, probe, pair, side, batch_size=batch_size)


@dataclass
class BanditAgreement:
    """How well scorer scores rank Bandit's insecure verdicts above its secure ones."""

    n: int
    n_insecure: int
    n_secure: int
    n_unparseable: int
    auroc: float | None
    """AUROC of scores against Bandit labels (None when one class is missing)."""
    auroc_ci: tuple[float, float] | None
    flag_agreement: float | None
    """Share of parseable texts where scorer flag == Bandit insecure."""

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "n_insecure": self.n_insecure,
            "n_secure": self.n_secure,
            "n_unparseable": self.n_unparseable,
            "auroc": self.auroc,
            "auroc_ci": self.auroc_ci,
            "flag_agreement": self.flag_agreement,
        }


def bandit_agreement(
    scores: Sequence[float] | np.ndarray,
    texts: Sequence[str],
    *,
    threshold: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> BanditAgreement:
    """Compare scorer scores with Bandit labels of the same texts (unparseable ones dropped)."""
    s = np.asarray(scores, dtype=np.float64)
    if len(s) != len(texts):
        raise AuditlensError(f"{len(s)} scores but {len(texts)} texts")
    results = bandit_labels(list(texts))
    status = np.array([r.status for r in results])
    parsed = status != "unparseable"
    y = (status[parsed] == "insecure").astype(np.int64)
    sp = s[parsed]
    n_ins, n_sec = int(y.sum()), int((1 - y).sum())
    value = ci = None
    if n_ins and n_sec:
        value = auroc(y, sp)
        ci = bootstrap_ci(win_rate, sp[y == 1], sp[y == 0], n_boot=n_boot, seed=seed)
    agree = None
    if threshold is not None and parsed.any():
        agree = float(((sp > threshold) == (y == 1)).mean())
    return BanditAgreement(
        n=len(texts),
        n_insecure=n_ins,
        n_secure=n_sec,
        n_unparseable=int((~parsed).sum()),
        auroc=value,
        auroc_ci=ci,
        flag_agreement=agree,
    )
