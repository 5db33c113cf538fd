"""The statistics every method shares, in one place.

Intervals (Wilson, percentile bootstrap, cluster-bootstrap AUROC), paired tests of a
fine-tuned model against its base on the same items (McNemar z for binary outcomes, paired z
for scores), rank statistics (win rate, AUROC) and matched-norm random directions, the null
control of every steering and lens statistic.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import torch
from jaxtyping import Float
from numpy.typing import ArrayLike, NDArray
from torch import Tensor

from auditlens.errors import AuditlensError

__all__ = [
    "Estimate",
    "auroc",
    "auroc_ci",
    "average_ranks",
    "bonferroni_z",
    "bootstrap_ci",
    "mcnemar_z",
    "p_to_z",
    "paired_z",
    "random_directions",
    "sign_flip_z",
    "wilson_interval",
    "win_rate",
    "win_rate_ci",
    "z_to_p",
]


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval."""

    value: float
    low: float
    high: float
    confidence: float = 0.95

    def to_json(self) -> dict[str, float]:
        """Plain dict of all fields."""
        return dataclasses.asdict(self)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n; (0, 1) when n == 0."""
    _check_confidence(confidence)
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def bootstrap_ci(
    stat_fn: Callable[..., float],
    *samples: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap CI of `stat_fn(*samples)`, resampling each sample independently.

    Samples are resampled along their first axis with replacement, `n_boot` times.
    """
    _check_confidence(confidence)
    if not samples:
        raise ValueError("bootstrap_ci needs at least one sample")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    arrays = [np.asarray(s) for s in samples]
    if any(a.ndim == 0 or len(a) == 0 for a in arrays):
        raise ValueError("every sample must be a non-empty sequence")
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot, dtype=np.float64)
    for b in range(n_boot):
        stats[b] = stat_fn(*(a[rng.integers(0, len(a), size=len(a))] for a in arrays))
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _as_scores(values: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    return arr


def average_ranks(values: ArrayLike) -> NDArray[np.float64]:
    """1-based ranks with ties given their average rank (like scipy's rankdata)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(v, kind="mergesort")
    sorted_v = v[order]
    new_group = np.r_[True, sorted_v[1:] != sorted_v[:-1]]
    starts = np.flatnonzero(new_group)
    ends = np.r_[starts[1:], v.size]
    group_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(v.size, dtype=np.float64)
    ranks[order] = group_rank[np.cumsum(new_group) - 1]
    return ranks


def win_rate(ft_scores: ArrayLike, base_scores: ArrayLike) -> float:
    """P(ft > base) + 0.5 P(ft == base) over random pairs: the Mann-Whitney AUC."""
    x = _as_scores(ft_scores, "ft_scores")
    y = _as_scores(base_scores, "base_scores")
    ranks = average_ranks(np.concatenate([x, y]))
    u = ranks[: x.size].sum() - x.size * (x.size + 1) / 2.0
    return float(u / (x.size * y.size))


def win_rate_ci(
    ft_scores: ArrayLike,
    base_scores: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """Win rate of ft over base with a percentile bootstrap CI (both samples resampled)."""
    x = _as_scores(ft_scores, "ft_scores")
    y = _as_scores(base_scores, "base_scores")
    low, high = bootstrap_ci(win_rate, x, y, n_boot=n_boot, seed=seed, confidence=confidence)
    return Estimate(win_rate(x, y), low, high, confidence)


def auroc(labels: Sequence[int] | ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve for binary labels (1 = positive); ties count one half."""
    y = np.asarray(labels).ravel()
    s = _as_scores(scores, "scores")
    if y.size != s.size:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0/1 or booleans")
    pos = y.astype(bool)
    if pos.all() or not pos.any():
        raise ValueError("auroc needs both positive and negative labels")
    return win_rate(s[pos], s[~pos])


def auroc_ci(
    labels: Sequence[int] | ArrayLike,
    scores: ArrayLike,
    groups: Sequence[str] | None = None,
    *,
    stratified: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile 95% bootstrap CI of AUROC.

    By default whole ``groups`` are resampled (a cluster bootstrap; without groups every item
    is its own group) and resamples holding a single class are skipped. ``stratified=True``
    resamples the positives and the negatives apart instead (both classes always present).
    """
    y = np.asarray(labels).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    rng = np.random.default_rng(seed)
    if stratified:
        pos, neg = s[y == 1], s[y == 0]
        if len(pos) == 0 or len(neg) == 0:
            raise AuditlensError("AUROC needs at least one positive and one negative")
        stats = []
        for _ in range(n_boot):
            p, n = rng.choice(pos, len(pos)), rng.choice(neg, len(neg))
            stats.append(auroc([1] * len(p) + [0] * len(n), np.concatenate([p, n])))
        low, high = np.quantile(stats, [0.025, 0.975])
        return float(low), float(high)
    g = np.asarray(groups) if groups is not None else np.arange(y.size)
    if not (y.size == s.size == g.size):
        raise AuditlensError("labels, scores and groups must have the same length")
    members = {k: np.flatnonzero(g == k) for k in np.unique(g)}
    keys = np.array(list(members))

    def stat(picked: np.ndarray) -> float:
        idx = np.concatenate([members[k] for k in picked])
        if len(np.unique(y[idx])) < 2:
            return float("nan")
        return auroc(y[idx], s[idx])

    values = np.array([stat(rng.choice(keys, size=len(keys))) for _ in range(n_boot)])
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise AuditlensError("no bootstrap resample held both labels; too few groups")
    low, high = np.quantile(values, [0.025, 0.975])
    return float(low), float(high)


def mcnemar_z(ft_flags: Sequence[bool], base_flags: Sequence[bool]) -> float:
    """Signed McNemar z of paired binary outcomes: (ft-only − base-only) / sqrt(discordant)."""
    only_ft = sum(f and not b for f, b in zip(ft_flags, base_flags, strict=True))
    only_base = sum(b and not f for f, b in zip(ft_flags, base_flags, strict=True))
    n = only_ft + only_base
    return 0.0 if n == 0 else (only_ft - only_base) / math.sqrt(n)


def paired_z(diffs: ArrayLike, floor: float = 1e-3) -> float:
    """Mean of paired differences over its standard error (sd floored, so ties give 0)."""
    d = np.asarray(diffs).ravel()  # keep the dtype: the mean is taken as given
    if d.size < 2:
        return 0.0
    mean = float(d.mean())
    se = max(float(d.std(ddof=1)), floor) / math.sqrt(d.size)
    return 0.0 if mean == 0.0 else mean / se


def sign_flip_z(diffs: ArrayLike) -> float:
    """``sum(d) / sqrt(sum(d²))``: the sign-flip (randomisation) z of paired differences.

    Under the null that each difference is as likely negative as positive it has mean 0 and
    variance 1; for differences in {-1, 0, 1} it is McNemar's z. 0 when every difference is 0.
    """
    d = np.asarray(diffs, dtype=np.float64).ravel()
    ss = float((d * d).sum())
    return 0.0 if ss == 0.0 else float(d.sum()) / math.sqrt(ss)


def z_to_p(z: float) -> float:
    """One-sided upper-tail p of a standard-normal z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def p_to_z(p: float) -> float:
    """The z whose one-sided upper-tail p is ``p`` (clipped to [1e-300, 1 - 1e-16])."""
    return -NormalDist().inv_cdf(min(max(p, 1e-300), 1.0 - 1e-16))


def bonferroni_z(z: float, m: int) -> float:
    """The largest of ``m`` z's as a z corrected for the selection: p → min(1, m·p), floored at
    0 (p 0.5), so a corrected z reads as "evidence beyond chance", never as negative evidence."""
    if m < 1:
        raise AuditlensError("bonferroni_z needs m >= 1")
    return p_to_z(min(0.5, m * z_to_p(z))) + 0.0  # no -0.0


def random_directions(n: int, d_model: int, norm: float, *, seed: int) -> Float[Tensor, "n d"]:
    """``n`` seeded Gaussian directions of exactly ``norm`` (the matched-norm null control).

    Drawn in float64 from ``torch.Generator().manual_seed(seed)``, scaled, then cast to float32.
    """
    if n < 0 or d_model < 1:
        raise AuditlensError("random_directions needs n >= 0 and d_model >= 1")
    gen = torch.Generator().manual_seed(seed)
    raw = torch.randn(n, d_model, generator=gen, dtype=torch.float64)
    return (raw * (norm / raw.norm(dim=-1, keepdim=True))).float()
