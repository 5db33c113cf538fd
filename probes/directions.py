"""Directions across models: mean-difference directions, their cosines, and probe transfer.

The misalignment direction of a model is its mean activation over misaligned answers minus
its mean over aligned answers (answer tokens averaged per example, then over examples).
Comparing these directions between base and fine-tuned models (or between organisms) shows
whether fine-tuning created, moved or re-used a shared representation; training a probe on
one model and applying it to the other says whether its decision rule still holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from auditlens.errors import AuditlensError
from auditlens.models import ModelPair
from auditlens.probes.features import Features, SideChoice, read_features
from auditlens.probes.pairsets import PairSet, load_pair_set
from auditlens.probes.probe import ProbeConfig, train_probe
from auditlens.probes.splits import Split
from auditlens.stats import auroc, auroc_ci

__all__ = [
    "CosineTable",
    "Direction",
    "TransferResult",
    "cosine",
    "cosine_table",
    "mean_difference",
    "misalignment_direction",
    "random_cosine_bound",
    "transfer_from_features",
    "transfer_probes",
]


def mean_difference(
    positive: Float[Tensor, "n d_model"], negative: Float[Tensor, "m d_model"]
) -> Float[Tensor, " d_model"]:
    """Mean of the positive rows minus mean of the negative rows."""
    if positive.ndim != 2 or negative.ndim != 2 or positive.shape[1] != negative.shape[1]:
        raise AuditlensError(f"cannot subtract means of {positive.shape} and {negative.shape}")
    if positive.shape[0] == 0 or negative.shape[0] == 0:
        raise AuditlensError("mean difference needs at least one example of each class")
    return positive.to(torch.float32).mean(0) - negative.to(torch.float32).mean(0)


def cosine(a: Float[Tensor, " d_model"], b: Float[Tensor, " d_model"]) -> float:
    """Cosine similarity of two vectors."""
    if a.shape != b.shape:
        raise AuditlensError(f"cannot compare directions of shapes {a.shape} and {b.shape}")
    a, b = a.to(torch.float64), b.to(torch.float64)
    return float(a @ b / (a.norm() * b.norm()).clamp_min(1e-12))


def random_cosine_bound(d_model: int, quantile: float = 0.95) -> float:
    """The ``quantile`` of |cosine| between two random directions in ``d_model`` dims (null)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + quantile / 2) / math.sqrt(d_model)


@dataclass
class Direction:
    """A mean-difference direction (positive minus negative) at one site of one model."""

    vector: Float[Tensor, " d_model"]
    site: str
    model_sha256: str
    label: str
    n_pos: int
    n_neg: int

    @property
    def unit(self) -> Float[Tensor, " d_model"]:
        return self.vector / self.vector.norm().clamp_min(1e-12)

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "model_sha256": self.model_sha256,
            "label": self.label,
            "n_pos": self.n_pos,
            "n_neg": self.n_neg,
            "norm": float(self.vector.norm()),
        }


def misalignment_direction(
    pair: ModelPair,
    site: str,
    *,
    side: SideChoice = "base",
    examples: PairSet | None = None,
    batch_size: int = 8,
    backend: str = "torch",
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Direction:
    """Mean activation over misaligned answers minus over aligned ones (answer-token means).

    ``examples`` defaults to the shipped ``misaligned_answers`` pair set.
    """
    data = examples or load_pair_set("misaligned_answers")
    feats = read_features(
        pair, data, [site], side=side, aggregations=("mean",), batch_size=batch_size,
        backend=backend, cache_dir=cache_dir, progress=progress,
    )  # fmt: skip
    return _direction_from(
        feats, data, site, pair.base.label if side == "base" else pair.finetuned.label
    )


def _direction_from(feats: Features, data: PairSet, site: str, label: str) -> Direction:
    x = feats.get(_pair_site(feats, site), "mean")
    y = torch.as_tensor(data.labels)
    return Direction(
        mean_difference(x[y == 1], x[y == 0]),
        site,
        feats.model_sha256,
        label,
        int((y == 1).sum()),
        int((y == 0).sum()),
    )


def _pair_site(feats: Features, site: str) -> str:
    """The canonical name under which ``feats`` holds ``site`` (accepts negative layers)."""
    if site in feats.sites:
        return site
    if len(feats.sites) == 1:
        return feats.sites[0]
    raise AuditlensError(f"no features at {site}; have {', '.join(feats.sites)}")


@dataclass
class CosineTable:
    """Pairwise cosines between named directions, with the random-direction null bound."""

    names: list[str]
    matrix: list[list[float]]
    random_bound_95: float
    """95th percentile of |cosine| between random directions of the same width."""

    def to_json(self) -> dict[str, Any]:
        return {"names": self.names, "matrix": self.matrix, "random_bound_95": self.random_bound_95}


def cosine_table(directions: Mapping[str, Direction | Tensor]) -> CosineTable:
    """Cosines between every pair of directions (e.g. of several models or organisms)."""
    if not directions:
        raise AuditlensError("cosine_table needs at least one direction")
    vectors = {k: (v.vector if isinstance(v, Direction) else v) for k, v in directions.items()}
    names = list(vectors)
    matrix = [[cosine(vectors[a], vectors[b]) for b in names] for a in names]
    d = int(next(iter(vectors.values())).shape[0])
    return CosineTable(names, matrix, random_cosine_bound(d))


@dataclass
class TransferResult:
    """Probes trained on one side and tested on both; ``auroc["base->finetuned"]`` etc."""

    site: str
    aggregation: str
    auroc: dict[str, float]
    auroc_ci: dict[str, tuple[float, float]]
    probe_cosine: float
    """Cosine between the probe directions trained on base and on fine-tuned."""
    mean_difference_cosine: float
    """Cosine between the two sides' mean-difference directions."""
    random_bound_95: float
    directions: dict[str, Direction]

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "aggregation": self.aggregation,
            "auroc": self.auroc,
            "auroc_ci": self.auroc_ci,
            "probe_cosine": self.probe_cosine,
            "mean_difference_cosine": self.mean_difference_cosine,
            "random_bound_95": self.random_bound_95,
            "directions": {k: v.to_json() for k, v in self.directions.items()},
        }


def transfer_from_features(
    features: Mapping[str, Features],
    examples: PairSet,
    split: Split,
    site: str,
    *,
    aggregation: str = "mean",
    config: ProbeConfig | None = None,
    seed: int = 0,
    n_boot: int = 1000,
    labels: Mapping[str, str] | None = None,
) -> TransferResult:
    """Probe transfer from features already read on both sides (``base`` and ``finetuned``).

    A probe trained on each side's ``split.train`` is scored on both sides' ``split.test``;
    ``n_boot=0`` skips the group-bootstrap CIs (they are then ``(nan, nan)``).
    """
    if len(split.test) == 0:
        raise AuditlensError("transfer needs a non-empty test split")
    y = examples.labels
    train = examples.subset(split.train)
    probes = {}
    for side, f in features.items():
        x = f.get(_pair_site(f, site), aggregation)
        probes[side] = train_probe(
            x[split.train], y[split.train], config, seed=seed, site=site,
            aggregation=aggregation, model_sha256=f.model_sha256,
        )  # fmt: skip
    scores: dict[str, float] = {}
    cis: dict[str, tuple[float, float]] = {}
    y_test = y[split.test]
    test_groups = [examples.groups[int(i)] for i in split.test]
    for src in ("base", "finetuned"):
        for dst in ("base", "finetuned"):
            f = features[dst]
            s = probes[src].score(f.get(_pair_site(f, site), aggregation)[split.test]).numpy()
            key = f"{src}->{dst}"
            scores[key] = auroc(y_test, s)
            nan = float("nan")
            cis[key] = (
                auroc_ci(y_test, s, test_groups, n_boot=n_boot, seed=seed) if n_boot else (nan, nan)
            )
    names = labels or {"base": "base", "finetuned": "finetuned"}
    dirs = {
        side: _direction_from(f.subset(split.train), train, site, names[side])
        for side, f in features.items()
    }
    d_model = int(next(iter(dirs.values())).vector.shape[0])
    return TransferResult(
        site=site,
        aggregation=aggregation,
        auroc=scores,
        auroc_ci=cis,
        probe_cosine=cosine(probes["base"].direction, probes["finetuned"].direction),
        mean_difference_cosine=cosine(dirs["base"].vector, dirs["finetuned"].vector),
        random_bound_95=random_cosine_bound(d_model),
        directions=dirs,
    )


def transfer_probes(
    pair: ModelPair,
    examples: PairSet,
    split: Split,
    site: str,
    *,
    aggregation: str = "mean",
    config: ProbeConfig | None = None,
    seed: int = 0,
    n_boot: int = 1000,
    batch_size: int = 8,
    backend: str = "torch",
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> TransferResult:
    """Train on base and apply to fine-tuned, and the reverse, on ``split.test``.

    AUROC CIs resample whole groups (templates). Also returns both sides' mean-difference
    directions (on the training examples) and their cosines.
    """
    if len(split.test) == 0:
        raise AuditlensError("transfer needs a non-empty test split")
    aggs = tuple(dict.fromkeys(("mean", aggregation)))
    feats = {
        side: read_features(
            pair,
            examples,
            [site],
            side=side,
            aggregations=aggs,
            batch_size=batch_size,
            backend=backend,
            cache_dir=cache_dir,
            progress=progress,
        )
        for side in ("base", "finetuned")
    }
    return transfer_from_features(
        feats, examples, split, site, aggregation=aggregation, config=config, seed=seed,
        n_boot=n_boot, labels={"base": pair.base.label, "finetuned": pair.finetuned.label},
    )  # fmt: skip
