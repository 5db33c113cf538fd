"""Sweep probes over sites and token aggregations; pick the best on the validation split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from auditlens.errors import AuditlensError
from auditlens.probes.evaluate import calibrate_threshold
from auditlens.probes.features import Features
from auditlens.probes.probe import LinearProbe, ProbeConfig, train_probe
from auditlens.probes.splits import Split
from auditlens.progress import progress_bar
from auditlens.stats import auroc

__all__ = ["SweepResult", "SweepRow", "sweep_probes"]


@dataclass
class SweepRow:
    """One probe of a sweep and its AUROC on each split (test is reported, never selected on)."""

    site: str
    aggregation: str
    train_auroc: float
    val_auroc: float
    test_auroc: float | None
    val_recall_at_fpr: float | None = None
    """Validation recall above the control-calibrated threshold (when controls are given)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "aggregation": self.aggregation,
            "train_auroc": self.train_auroc,
            "val_auroc": self.val_auroc,
            "test_auroc": self.test_auroc,
            "val_recall_at_fpr": self.val_recall_at_fpr,
        }


@dataclass
class SweepResult:
    """All sweep rows, the selected (site, aggregation) and its trained probe."""

    rows: list[SweepRow]
    best_site: str
    best_aggregation: str
    probes: dict[tuple[str, str], LinearProbe] = field(default_factory=dict, repr=False)

    @property
    def best_probe(self) -> LinearProbe:
        return self.probes[(self.best_site, self.best_aggregation)]

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": [r.to_json() for r in self.rows],
            "best_site": self.best_site,
            "best_aggregation": self.best_aggregation,
        }


def sweep_probes(
    features: Features,
    labels: Sequence[int] | np.ndarray,
    split: Split,
    config: ProbeConfig | None = None,
    *,
    sites: Sequence[str] | None = None,
    aggregations: Sequence[str] | None = None,
    seed: int = 0,
    data_sha256: str = "",
    control: Features | None = None,
    fpr: float = 0.01,
    progress: bool = True,
) -> SweepResult:
    """Train one probe per (site, aggregation) on ``split.train`` and select on ``split.val``.

    Selection is by validation AUROC (rounded to 0.01); with ``control`` features, ties go to
    the higher validation recall at ``fpr`` on the control set (AUROC saturates long before
    recall at a low false-positive rate does), then to the shallower site. Test AUROC is
    only reported.
    """
    y = np.asarray(labels).astype(np.int64)
    if len(split.val) == 0:
        raise AuditlensError("a sweep needs a validation split to select on")
    sites = list(sites or features.sites)
    aggregations = list(aggregations or features.aggregations)
    rows: list[SweepRow] = []
    probes: dict[tuple[str, str], LinearProbe] = {}
    total = len(sites) * len(aggregations)
    with progress_bar(total, "probe sweep", enabled=progress) as advance:
        for site in sites:
            for agg in aggregations:
                x = features.get(site, agg)
                probe = train_probe(
                    x[split.train], y[split.train], config, seed=seed, site=site,
                    aggregation=agg, model_sha256=features.model_sha256, data_sha256=data_sha256,
                )  # fmt: skip
                scores = probe.score(x).numpy()
                test = auroc(y[split.test], scores[split.test]) if len(split.test) else None
                recall = None
                if control is not None:
                    thr = calibrate_threshold(probe.score(control.get(site, agg)), fpr)
                    val_scores = scores[split.val]
                    recall = float((val_scores[y[split.val] == 1] > thr).mean())
                rows.append(
                    SweepRow(
                        site,
                        agg,
                        auroc(y[split.train], scores[split.train]),
                        auroc(y[split.val], scores[split.val]),
                        test,
                        recall,
                    )
                )
                probes[(site, agg)] = probe
                advance(1)
    order = {s: i for i, s in enumerate(sites)}
    best = max(
        rows, key=lambda r: (round(r.val_auroc, 2), r.val_recall_at_fpr or 0.0, -order[r.site])
    )
    return SweepResult(rows, best.site, best.aggregation, probes)
