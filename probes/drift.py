"""Drift: how far the fine-tuned model moved from the base, in generations or in activations.

:func:`track_drift` scores both models' generations on the same prompts and reports the win
rate: P(a random fine-tuned generation scores above a random base generation), ties counting
one half (the Mann-Whitney AUC), with a bootstrap CI. 0.5 means no drift in the scorer's
direction. With sampling (temperature > 0) a second base sample gives the null control: base
vs base, which should sit at 0.5.

:func:`projection_drift` projects per-layer activation differences onto directions against
shuffled-label directions (:func:`shuffled_directions`), the statistic of
:mod:`auditlens.probes.projection`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from auditlens.datasets import Prompt, PromptSet, load_prompts
from auditlens.errors import AuditlensError
from auditlens.generate import generate
from auditlens.models import ModelPair
from auditlens.probes.directions import mean_difference
from auditlens.stats import Estimate, win_rate_ci

__all__ = [
    "DriftResult",
    "ProjectionDrift",
    "TextScorer",
    "drift_from_scores",
    "projection_drift",
    "shuffled_directions",
    "track_drift",
]


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


def _unit(v: Float[Tensor, "*batch d_model"]) -> Float[Tensor, "*batch d_model"]:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def shuffled_directions(
    x: Float[Tensor, "n d_model"], labels: np.ndarray, n: int = 200, seed: int = 0
) -> Float[Tensor, "shuffles d_model"]:
    """Unit mean-difference directions of ``x`` under ``n`` random permutations of the labels."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        y = torch.as_tensor(rng.permutation(labels))
        out.append(mean_difference(x[y == 1], x[y == 0]))
    return _unit(torch.stack(out))


@dataclass
class ProjectionDrift:
    """Fine-tuned minus base activations projected onto the misalignment direction, per layer."""

    layers: list[int]
    """Layers fine-tuning changed (the statistic's support)."""
    layer_z: list[float]
    """Per layer: mean projection, as a z against the shuffled-direction projections."""
    layer_win_rate: list[float]
    """Per layer: share of prompts whose projection is positive (ties half)."""
    layer_null_band: list[tuple[float, float]]
    """Per layer: 2.5% and 97.5% of the shuffled-direction z's."""
    z: float
    """Mean of ``layer_z`` over the changed layers."""
    null_mean: float
    null_std: float
    effect_size: float
    """``(z - null_mean) / null_std``: a permutation z, positive = towards misalignment."""
    p_value: float
    """Share of permutations with a combined z at least as large (one-sided)."""
    prompt_scores: list[float]
    """Per prompt: mean over layers of its projection, standardised like ``layer_z``."""
    win_rate: float
    win_rate_null: float
    """Mean win rate of the prompt scores under the shuffled directions."""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _win(values: Tensor) -> float:
    return float((values > 0).double().mean() + 0.5 * (values == 0).double().mean())


def projection_drift(
    deltas: dict[int, Float[Tensor, "n d_model"]],
    directions: dict[int, Float[Tensor, " d_model"]],
    nulls: dict[int, Float[Tensor, "shuffles d_model"]],
) -> ProjectionDrift:
    """Project per-layer activation differences onto directions, against shuffled directions.

    ``deltas`` holds only the changed layers; with none (base vs base) everything is 0.
    """
    layers = sorted(deltas)
    if not layers:
        return ProjectionDrift([], [], [], [], 0.0, 0.0, 0.0, 0.0, 1.0, [], 0.5, 0.5)
    zs, null_zs, per_prompt, per_prompt_null, bands, wins = [], [], [], [], [], []
    for layer in layers:
        delta = deltas[layer].to(torch.float64)
        proj = delta @ _unit(directions[layer]).to(torch.float64)  # [n]
        proj_null = delta @ nulls[layer].to(torch.float64).T  # [n, shuffles]
        stat_null = proj_null.mean(0)
        mu, sd = stat_null.mean(), stat_null.std().clamp_min(1e-12)
        zs.append((proj.mean() - mu) / sd)
        null_z = (stat_null - mu) / sd
        null_zs.append(null_z)
        per_prompt.append((proj - mu) / sd)
        per_prompt_null.append((proj_null - mu) / sd)
        bands.append((float(null_z.quantile(0.025)), float(null_z.quantile(0.975))))
        wins.append(_win(proj))
    z = torch.stack(zs).mean()
    z_null = torch.stack(null_zs).mean(0)
    sd_null = float(z_null.std().clamp_min(1e-12))
    prompt_scores = torch.stack(per_prompt).mean(0)
    prompt_null = torch.stack(per_prompt_null).mean(0)  # [n, shuffles]
    null_wins = [_win(prompt_null[:, k]) for k in range(prompt_null.shape[1])]
    return ProjectionDrift(
        layers=layers,
        layer_z=[float(v) for v in zs],
        layer_win_rate=wins,
        layer_null_band=bands,
        z=float(z),
        null_mean=float(z_null.mean()),
        null_std=sd_null,
        effect_size=float((z - z_null.mean()) / sd_null),
        p_value=float((z_null >= z).double().mean()),
        prompt_scores=[float(v) for v in prompt_scores],
        win_rate=_win(prompt_scores),
        win_rate_null=float(np.mean(null_wins)),
    )
