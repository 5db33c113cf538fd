"""Drift tracking: score both models' generations on the same prompts and report the win rate.

The win rate is P(a random fine-tuned generation scores above a random base generation),
ties counting one half (the Mann-Whitney AUC), with a bootstrap CI. 0.5 means no drift in
the scorer's direction. With sampling (temperature > 0) a second base sample gives the null
control: base vs base, which should sit at 0.5.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from auditlens.datasets import Prompt, PromptSet, load_prompts
from auditlens.errors import AuditlensError
from auditlens.generate import generate
from auditlens.models import ModelPair
from auditlens.stats import Estimate, win_rate_ci

__all__ = ["DriftResult", "TextScorer", "drift_from_scores", "track_drift"]


class TextScorer(Protocol):
    """Anything that scores answers given their prompts (e.g. a :class:`ProbeScorer`)."""

    def score(
        self, texts: Sequence[str], prompts: Sequence[str | Prompt | None] | None = None
    ) -> np.ndarray: ...


@dataclass
class DriftResult:
    """Win rate of fine-tuned over base generations under one scorer, with its null control."""

    scorer: str
    n_prompts: int
    win_rate: Estimate
    base_mean: float
    ft_mean: float
    null: Estimate | None
    """Base vs a second base sample (None with greedy decoding, where it is exactly 0.5)."""
    threshold: float | None = None
    base_flag_rate: float | None = None
    ft_flag_rate: float | None = None
    base_scores: list[float] = field(default_factory=list)
    ft_scores: list[float] = field(default_factory=list)
    generations: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "scorer": self.scorer,
            "n_prompts": self.n_prompts,
            "win_rate": self.win_rate.to_json(),
            "base_mean": self.base_mean,
            "ft_mean": self.ft_mean,
            "null": self.null.to_json() if self.null else None,
            "threshold": self.threshold,
            "base_flag_rate": self.base_flag_rate,
            "ft_flag_rate": self.ft_flag_rate,
            "base_scores": self.base_scores,
            "ft_scores": self.ft_scores,
        }


def drift_from_scores(
    base_scores: Sequence[float] | np.ndarray,
    ft_scores: Sequence[float] | np.ndarray,
    *,
    scorer: str = "scores",
    null_scores: Sequence[float] | np.ndarray | None = None,
    threshold: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> DriftResult:
    """Win rate (with bootstrap CI) from precomputed scores of base and fine-tuned answers.

    ``null_scores`` are scores of a second base sample on the same prompts.
    """
    base = np.asarray(base_scores, dtype=np.float64)
    ft = np.asarray(ft_scores, dtype=np.float64)
    if base.size == 0 or ft.size == 0:
        raise AuditlensError("drift needs scores for both models")
    null = None
    if null_scores is not None:
        null = win_rate_ci(np.asarray(null_scores, dtype=np.float64), base, n_boot, seed)
    return DriftResult(
        scorer=scorer,
        n_prompts=int(max(base.size, ft.size)),
        win_rate=win_rate_ci(ft, base, n_boot, seed),
        base_mean=float(base.mean()),
        ft_mean=float(ft.mean()),
        null=null,
        threshold=threshold,
        base_flag_rate=None if threshold is None else float((base > threshold).mean()),
        ft_flag_rate=None if threshold is None else float((ft > threshold).mean()),
        base_scores=base.tolist(),
        ft_scores=ft.tolist(),
    )


def track_drift(
    pair: ModelPair,
    prompts: PromptSet | Sequence[Any] | str,
    scorer: TextScorer | Callable[[Sequence[str], Sequence[Prompt]], np.ndarray],
    *,
    max_new_tokens: int = 60,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 8,
    null_control: bool = True,
    n_boot: int = 1000,
    scorer_name: str | None = None,
) -> DriftResult:
    """Generate with both sides of ``pair`` on ``prompts``, score every answer, compare.

    ``scorer`` is a :class:`~auditlens.probes.scorer.ProbeScorer` (its threshold gives flag
    rates) or any callable ``(texts, prompts) -> scores``.
    """
    prompt_set = load_prompts(prompts)
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "seed": seed,
        "batch_size": batch_size,
    }
    texts = {
        "base": generate(pair.base, pair.tokenizer, prompt_set, **kwargs),
        "finetuned": generate(pair.finetuned, pair.tokenizer, prompt_set, **kwargs),
    }
    if null_control and temperature > 0:
        kwargs["seed"] = seed + 1
        texts["base_null"] = generate(pair.base, pair.tokenizer, prompt_set, **kwargs)
    request = list(prompt_set.prompts)

    def run(answers: list[str]) -> np.ndarray:
        if hasattr(scorer, "score"):
            return np.asarray(scorer.score(answers, request), dtype=np.float64)
        return np.asarray(scorer(answers, request), dtype=np.float64)  # type: ignore[operator]

    scores = {name: run(answers) for name, answers in texts.items()}
    probe = getattr(scorer, "probe", None)
    threshold = getattr(probe, "threshold", None)
    name = scorer_name or str(getattr(scorer, "kind", getattr(scorer, "__name__", "scorer")))
    result = drift_from_scores(
        scores["base"],
        scores["finetuned"],
        scorer=name,
        null_scores=scores.get("base_null"),
        threshold=threshold,
        n_boot=n_boot,
        seed=seed,
    )
    result.generations = texts
    return result
