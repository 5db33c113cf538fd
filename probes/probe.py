"""Linear probes: logistic regression on standardized features, or a difference of means.

A probe scores ``((x - mean) / scale) @ weight + bias``. Its :attr:`LinearProbe.direction`
is the same linear map expressed in raw activation space (unit norm). Probes save to
safetensors (tensors) plus JSON (site, aggregation, threshold, hashes, metrics) and refuse to
load against a model with another hash unless told to (then they warn).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Bool, Float
from safetensors.torch import load_file, save_file
from torch import Tensor

from auditlens.errors import AuditlensError

__all__ = [
    "PROBE_FORMAT",
    "LinearProbe",
    "ProbeConfig",
    "ProbeMismatchError",
    "ProbeMismatchWarning",
    "load_probe",
    "train_probe",
]

ProbeMethod = Literal["logreg", "diff_means"]
PROBE_FORMAT = 1


class ProbeMismatchError(AuditlensError):
    """A saved probe is applied to a model other than the one it was trained on."""


class ProbeMismatchWarning(UserWarning):
    """A saved probe was loaded for another model on purpose (``allow_mismatch=True``)."""


@dataclass
class ProbeConfig:
    """How to fit a linear probe."""

    method: ProbeMethod = "logreg"
    """``logreg`` (L2 logistic regression, scikit-learn) or ``diff_means`` (mean difference)."""
    C: float = 0.1
    """Inverse L2 strength of ``logreg`` (Apollo's reg 10 is C = 0.1)."""
    fit_intercept: bool = False
    """Fit a bias in ``logreg`` (Apollo: no intercept on standardized features)."""
    standardize: bool = True
    """Standardize features (mean 0, std 1 on the training set) before fitting."""
    max_iter: int = 2000
    """Iteration cap of the logistic-regression solver."""

    def __post_init__(self) -> None:
        if self.method not in ("logreg", "diff_means"):
            raise AuditlensError(f"unknown probe method {self.method!r}; use logreg or diff_means")
        if not self.C > 0:
            raise AuditlensError(f"C must be > 0, got {self.C}")
        if self.max_iter < 1:
            raise AuditlensError(f"max_iter must be >= 1, got {self.max_iter}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LinearProbe:
    """A trained linear probe on one site and token aggregation."""

    weight: Float[Tensor, " d_model"]
    """Weights on standardized features."""
    bias: float
    mean: Float[Tensor, " d_model"]
    """Scaler mean (zeros when not standardized)."""
    scale: Float[Tensor, " d_model"]
    """Scaler standard deviation (ones when not standardized)."""
    site: str = ""
    aggregation: str = "mean"
    mask: str = "assistant"
    """Which tokens were aggregated: ``assistant`` (answer tokens) or ``last_K``."""
    question: str | None = None
    """A user turn appended after the answer before reading (a yes/no elicitation), if any."""
    method: str = "logreg"
    threshold: float | None = None
    """Score above which an example is flagged (calibrated on a control set)."""
    target_fpr: float | None = None
    model_sha256: str = ""
    """Fingerprint of the model side whose activations trained the probe."""
    data_sha256: str = ""
    """Hash of the training examples."""
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    """Free-form provenance (pair set name, split, seed, ...)."""

    @property
    def d_model(self) -> int:
        return int(self.weight.shape[0])

    @property
    def direction(self) -> Float[Tensor, " d_model"]:
        """The probe's linear map in raw activation space, unit norm."""
        raw = self.weight / self.scale
        return raw / raw.norm().clamp_min(1e-12)

    def score(self, x: Float[Tensor, "n d_model"]) -> Float[Tensor, " n"]:
        """Probe scores (logits for ``logreg``); higher means more positive."""
        if x.ndim != 2 or x.shape[1] != self.d_model:
            raise AuditlensError(
                f"features of shape {tuple(x.shape)} do not fit a probe of width {self.d_model}"
            )
        z = (x.to(torch.float32) - self.mean) / self.scale
        return z @ self.weight + self.bias

    def flag(self, x: Float[Tensor, "n d_model"]) -> Bool[Tensor, " n"]:
        """Scores above the calibrated threshold."""
        if self.threshold is None:
            raise AuditlensError("this probe has no calibrated threshold; run calibrate first")
        return self.score(x) > self.threshold

    def to_json(self) -> dict[str, Any]:
        """Everything but the tensors."""
        return {
            "format": PROBE_FORMAT,
            "site": self.site,
            "aggregation": self.aggregation,
            "mask": self.mask,
            "question": self.question,
            "method": self.method,
            "d_model": self.d_model,
            "bias": self.bias,
            "threshold": self.threshold,
            "target_fpr": self.target_fpr,
            "model_sha256": self.model_sha256,
            "data_sha256": self.data_sha256,
            "metrics": self.metrics,
            "config": self.config,
            "notes": self.notes,
        }

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``<path>.safetensors`` (weights, scaler, direction) and ``<path>.json``."""
        stem = _stem(path)
        stem.parent.mkdir(parents=True, exist_ok=True)
        tensors = {
            "weight": self.weight.contiguous(),
            "mean": self.mean.contiguous(),
            "scale": self.scale.contiguous(),
            "direction": self.direction.contiguous(),
        }
        st_path, json_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
        save_file(tensors, str(st_path), metadata={"format": str(PROBE_FORMAT)})
        json_path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        return st_path, json_path


def _stem(path: str | Path) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".json", ".safetensors") else p


def load_probe(
    path: str | Path, *, model_sha256: str | None = None, allow_mismatch: bool = False
) -> LinearProbe:
    """Load a probe saved by :meth:`LinearProbe.save`.

    When ``model_sha256`` is given and differs from the probe's, this raises
    :class:`ProbeMismatchError`; with ``allow_mismatch=True`` it warns
    (:class:`ProbeMismatchWarning`) instead, for deliberate cross-model transfer.
    """
    stem = _stem(path)
    st_path, json_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    if not st_path.is_file() or not json_path.is_file():
        raise AuditlensError(f"no probe at {stem} (need {st_path.name} and {json_path.name})")
    try:
        meta = json.loads(json_path.read_text())
    except json.JSONDecodeError as err:
        raise AuditlensError(f"{json_path}: malformed probe JSON ({err.msg})") from err
    if meta.get("format") != PROBE_FORMAT:
        raise AuditlensError(f"{json_path}: unsupported probe format {meta.get('format')!r}")
    tensors = load_file(str(st_path))
    probe = LinearProbe(
        weight=tensors["weight"],
        bias=float(meta["bias"]),
        mean=tensors["mean"],
        scale=tensors["scale"],
        site=meta["site"],
        aggregation=meta["aggregation"],
        mask=meta.get("mask", "assistant"),
        question=meta.get("question"),
        method=meta["method"],
        threshold=meta.get("threshold"),
        target_fpr=meta.get("target_fpr"),
        model_sha256=meta.get("model_sha256", ""),
        data_sha256=meta.get("data_sha256", ""),
        metrics=meta.get("metrics", {}),
        config=meta.get("config", {}),
        notes=meta.get("notes", {}),
    )
    if model_sha256 is not None and probe.model_sha256 and model_sha256 != probe.model_sha256:
        message = (
            f"probe {stem.name} was trained on model {probe.model_sha256[:12]} but is applied "
            f"to model {model_sha256[:12]}"
        )
        if not allow_mismatch:
            raise ProbeMismatchError(message + "; pass allow_mismatch=True to apply it anyway")
        warnings.warn(message + " (allow_mismatch=True)", ProbeMismatchWarning, stacklevel=2)
    return probe


def _as_numpy(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def train_probe(
    x: Float[Tensor, "n d_model"],
    y: Sequence[int] | np.ndarray | Tensor,
    config: ProbeConfig | None = None,
    *,
    seed: int = 0,
    site: str = "",
    aggregation: str = "mean",
    model_sha256: str = "",
    data_sha256: str = "",
) -> LinearProbe:
    """Fit a probe to features ``x`` and binary labels ``y`` (1 = positive).

    ``diff_means`` uses the difference of class means (in standardized space when
    ``standardize``) with the bias placing the midpoint of the class means at score 0.
    """
    cfg = config or ProbeConfig()
    features = _as_numpy(x)
    labels = np.asarray(y.cpu() if isinstance(y, Tensor) else y).astype(np.int64).ravel()
    if features.ndim != 2 or features.shape[0] != labels.shape[0]:
        raise AuditlensError(f"{features.shape} features do not fit {labels.shape[0]} labels")
    if not np.isin(labels, (0, 1)).all() or len(np.unique(labels)) < 2:
        raise AuditlensError("probe training needs binary labels with both classes present")
    if not np.isfinite(features).all():
        raise AuditlensError("probe features contain NaN or inf")
    if cfg.standardize:
        mean = features.mean(axis=0)
        scale = features.std(axis=0)
        scale[scale < 1e-8] = 1.0  # like scikit-learn: constant features are left unscaled
    else:
        mean, scale = np.zeros(features.shape[1]), np.ones(features.shape[1])
    z = (features - mean) / scale
    if cfg.method == "logreg":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(
            C=cfg.C, fit_intercept=cfg.fit_intercept, max_iter=cfg.max_iter, random_state=seed
        )
        model.fit(z, labels)
        weight = model.coef_[0]
        bias = float(model.intercept_[0]) if cfg.fit_intercept else 0.0
    else:
        mu_pos, mu_neg = z[labels == 1].mean(axis=0), z[labels == 0].mean(axis=0)
        weight = mu_pos - mu_neg
        bias = float(-weight @ (mu_pos + mu_neg) / 2)
    return LinearProbe(
        weight=torch.tensor(weight, dtype=torch.float32),
        bias=bias,
        mean=torch.tensor(mean, dtype=torch.float32),
        scale=torch.tensor(scale, dtype=torch.float32),
        site=site,
        aggregation=aggregation,
        method=cfg.method,
        model_sha256=model_sha256,
        data_sha256=data_sha256,
        config=cfg.to_json(),
    )
