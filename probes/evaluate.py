"""Probe evaluation beyond AUROC: accuracy, AUROC with bootstrap CIs, recall at a fixed
false-positive rate calibrated on a control set of ordinary answers, and a shuffled-label
null control.

AUROC alone misleads: a probe can rank well (AUROC 0.998) yet catch few positives once its
threshold must keep false alarms on ordinary traffic at 1%. The threshold here is the
(1 - fpr) quantile of control scores, chosen so at most ``floor(fpr * n)`` control examples
score above it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from auditlens.errors import AuditlensError
from auditlens.probes.probe import LinearProbe, ProbeConfig, train_probe
from auditlens.stats import auroc, auroc_ci, bootstrap_ci, wilson_interval, win_rate

__all__ = [
    "ProbeEvaluation",
    "ShuffledControl",
    "calibrate_threshold",
    "evaluate_probe",
    "evaluate_scores",
    "shuffled_label_control",
]


def _np(values: Sequence[float] | np.ndarray | Tensor) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().to("cpu", torch.float64).numpy().ravel()
    return np.asarray(values, dtype=np.float64).ravel()


def calibrate_threshold(
    control_scores: Sequence[float] | np.ndarray | Tensor, fpr: float = 0.01
) -> float:
    """The score threshold with at most ``floor(fpr * n)`` control scores strictly above it.

    With fewer than ``1 / fpr`` control examples this is the control maximum (no false
    positive allowed), the conservative reading of "at most fpr".
    """
    scores = np.sort(_np(control_scores))[::-1]
    if scores.size == 0:
        raise AuditlensError("threshold calibration needs a non-empty control set")
    if not 0 <= fpr < 1:
        raise AuditlensError(f"fpr must lie in [0, 1), got {fpr}")
    if not np.isfinite(scores).all():
        raise AuditlensError("control scores contain NaN or inf")
    allowed = math.floor(fpr * scores.size + 1e-9)
    return float(scores[allowed])


@dataclass
class ProbeEvaluation:
    """Metrics of one probe on one labelled test set and one control set."""

    n: int
    n_pos: int
    n_neg: int
    auroc: float
    auroc_ci: tuple[float, float]
    accuracy: float
    """Accuracy at the decision boundary (score 0; logit 0 for logistic regression)."""
    accuracy_ci: tuple[float, float]
    balanced_accuracy: float
    threshold: float
    """Flag threshold (calibrated on the control set unless given)."""
    target_fpr: float
    recall_at_fpr: float
    """Share of test positives scoring above :attr:`threshold`."""
    recall_ci: tuple[float, float]
    test_fpr: float
    """Share of test negatives scoring above :attr:`threshold`."""
    n_control: int
    control_fpr: float
    """Share of the calibration control set above the threshold (<= target by construction)."""
    n_heldout_control: int = 0
    heldout_control_fpr: float | None = None
    """Share of a held-out control set above the threshold (an honest FPR estimate)."""
    heldout_control_fpr_ci: tuple[float, float] | None = None
    shuffled: ShuffledControl | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["shuffled"] = self.shuffled.to_json() if self.shuffled else None
        return out


@dataclass
class ShuffledControl:
    """AUROC of probes trained on permuted labels (the null: about 0.5)."""

    aurocs: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return float(np.mean(self.aurocs)) if self.aurocs else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {"mean_auroc": self.mean, "aurocs": self.aurocs}


def evaluate_scores(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray | Tensor,
    *,
    control_scores: Sequence[float] | np.ndarray | Tensor,
    fpr: float = 0.01,
    threshold: float | None = None,
    heldout_control_scores: Sequence[float] | np.ndarray | Tensor | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    shuffled: ShuffledControl | None = None,
    groups: Sequence[str] | None = None,
) -> ProbeEvaluation:
    """Evaluate scores of a labelled test set against a control set of ordinary examples.

    The threshold is calibrated on ``control_scores`` unless ``threshold`` is given. The
    AUROC CI is a stratified bootstrap (positives and negatives resampled separately), or,
    with ``groups``, a cluster bootstrap over whole groups: near-duplicates of one template
    are not independent evidence, and resampling them one by one gives too narrow a CI.
    """
    y = np.asarray(labels).astype(np.int64).ravel()
    s = _np(scores)
    if y.size != s.size:
        raise AuditlensError(f"{y.size} labels but {s.size} scores")
    control = _np(control_scores)
    thr = calibrate_threshold(control, fpr) if threshold is None else float(threshold)
    pos, neg = s[y == 1], s[y == 0]
    if pos.size == 0 or neg.size == 0:
        raise AuditlensError("evaluation needs both positive and negative test examples")
    value = auroc(y, s)
    if groups is None:
        ci = bootstrap_ci(win_rate, pos, neg, n_boot=n_boot, seed=seed)
    else:
        ci = auroc_ci(y, s, groups, n_boot=n_boot, seed=seed)
    correct = int(((s > 0) == (y == 1)).sum())
    k_recall = int((pos > thr).sum())
    heldout = None if heldout_control_scores is None else _np(heldout_control_scores)
    k_held = int((heldout > thr).sum()) if heldout is not None else 0
    return ProbeEvaluation(
        n=int(y.size),
        n_pos=int(pos.size),
        n_neg=int(neg.size),
        auroc=value,
        auroc_ci=ci,
        accuracy=correct / y.size,
        accuracy_ci=wilson_interval(correct, int(y.size)),
        balanced_accuracy=float(((pos > 0).mean() + (neg <= 0).mean()) / 2),
        threshold=thr,
        target_fpr=fpr,
        recall_at_fpr=k_recall / pos.size,
        recall_ci=wilson_interval(k_recall, int(pos.size)),
        test_fpr=float((neg > thr).mean()),
        n_control=int(control.size),
        control_fpr=float((control > thr).mean()),
        n_heldout_control=0 if heldout is None else int(heldout.size),
        heldout_control_fpr=None if heldout is None else k_held / max(1, heldout.size),
        heldout_control_fpr_ci=None if heldout is None else wilson_interval(k_held, heldout.size),
        shuffled=shuffled,
    )


def evaluate_probe(
    probe: LinearProbe,
    x_test: Float[Tensor, "n d_model"],
    y_test: Sequence[int] | np.ndarray,
    *,
    x_control: Float[Tensor, "m d_model"],
    fpr: float = 0.01,
    x_heldout_control: Float[Tensor, "k d_model"] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    shuffled: ShuffledControl | None = None,
    groups: Sequence[str] | None = None,
) -> ProbeEvaluation:
    """Score test and control features with ``probe`` and evaluate (see :func:`evaluate_scores`)."""
    held = None if x_heldout_control is None else probe.score(x_heldout_control)
    return evaluate_scores(
        y_test,
        probe.score(x_test),
        control_scores=probe.score(x_control),
        fpr=fpr,
        heldout_control_scores=held,
        n_boot=n_boot,
        seed=seed,
        shuffled=shuffled,
        groups=groups,
    )


def shuffled_label_control(
    x_train: Float[Tensor, "n d_model"],
    y_train: Sequence[int] | np.ndarray,
    x_test: Float[Tensor, "m d_model"],
    y_test: Sequence[int] | np.ndarray,
    config: ProbeConfig | None = None,
    *,
    n_shuffles: int = 5,
    seed: int = 0,
) -> ShuffledControl:
    """Train on randomly permuted training labels and report the test AUROC of each run."""
    if n_shuffles < 1:
        raise AuditlensError("n_shuffles must be >= 1")
    rng = np.random.default_rng(seed)
    y = np.asarray(y_train).astype(np.int64)
    out = []
    for i in range(n_shuffles):
        probe = train_probe(x_train, rng.permutation(y), config, seed=seed + i)
        out.append(auroc(np.asarray(y_test), _np(probe.score(x_test))))
    return ShuffledControl(out)
