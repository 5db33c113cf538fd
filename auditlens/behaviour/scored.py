"""Answers read by a text scorer (e.g. a shipped probe scorer), fine-tuned against base."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from auditlens.reports.findings import Finding
from auditlens.stats import paired_z

__all__ = ["TextScorer", "score_sides", "scored_finding"]


class TextScorer(Protocol):
    """Scores texts given their prompts (e.g. :class:`auditlens.probes.ProbeScorer`)."""

    def score(self, texts: Sequence[str], prompts: Any = None) -> np.ndarray: ...


def score_sides(
    scorer: TextScorer, texts: Mapping[str, Sequence[str]], prompts: Sequence[str]
) -> dict[str, np.ndarray]:
    """The scorer's score of each side's answers to the same prompts."""
    return {side: scorer.score(list(t), list(prompts)) for side, t in texts.items()}


def scored_finding(
    kind: str,
    scores: Mapping[str, np.ndarray],
    what: str,
    artifacts: list[str],
    *,
    contributes: bool,
) -> Finding:
    """A scorer's mean score on fine-tuned vs base answers to the same prompts, as a paired z."""
    diffs = scores["finetuned"] - scores["base"]
    z = paired_z(diffs)
    name = kind.replace("_", "-")
    return Finding(
        id=f"behaviour.{kind}_probe",
        family="behaviour",
        method=f"probe_scorer:{kind}",
        statistic=f"mean {name} probe score",
        value=float(scores["finetuned"].mean()),
        control=float(scores["base"].mean()),
        control_kind="base model's answers to the same prompts (paired)",
        effect_size=z,
        summary=(
            f"The {name} probe scored the fine-tuned model's {what} "
            f"{float(diffs.mean()):+.3f} above the base's on average (paired z = {z:+.2f})."
        ),
        artifacts=artifacts,
        contributes=contributes,
    )
