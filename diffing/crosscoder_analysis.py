"""Per-latent crosscoder analysis and the one-line crosscoder diff of an activation store.

- relative decoder norm ``rel = ((|d_base| - |d_ft|) / max(|d_base|, |d_ft|) + 1) / 2``:
  0 means fine-tuned only, 1 base only, 0.5 shared;
- classes: ``ft_only`` (rel < 0.1), ``base_only`` (rel > 0.9), ``shared`` (|rel - 0.5| < 0.1),
  ``other``;
- decoder cosine between each latent's base and fine-tuned vectors;
- Latent Scaling (:mod:`auditlens.diffing.latent_scaling`): an exclusive latent whose ν ratio
  reaches ``ratio_threshold`` is re-labelled ``shared`` (a false exclusive latent).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor

from auditlens.diffing.crosscoder_model import (
    CheckpointError,
    Crosscoder,
    CrosscoderConfig,
    _read_json,
)
from auditlens.diffing.crosscoder_train import (
    CrosscoderTrainConfig,
    CrosscoderTraining,
    default_n_steps,
    store_batches,
    train_crosscoder,
)
from auditlens.diffing.latent_scaling import LatentScaling, latent_scaling
from auditlens.errors import AuditlensError
from auditlens.store import ActivationStore

__all__ = [
    "LATENT_CLASSES",
    "CrosscoderAnalysis",
    "CrosscoderResult",
    "analyze_crosscoder",
    "classify_latents",
    "crosscoder_diff",
    "decoder_cosine",
    "load_crosscoder_result",
    "relative_decoder_norm",
]

LATENT_CLASSES = ("ft_only", "base_only", "shared", "other")


def _per_model(cc: Crosscoder, site: int | str | None) -> Float[Tensor, "n_latents 2 d"]:
    w = cc.W_dec_LSMD.detach()
    if site is not None:
        return w[:, cc.site_index(site)]
    return w.permute(0, 2, 1, 3).reshape(w.shape[0], 2, -1)


def relative_decoder_norm(
    cc: Crosscoder, site: int | str | None = None
) -> Float[Tensor, " n_latents"]:
    """``((|d_base| - |d_ft|) / max + 1) / 2`` per latent (all sites together by default)."""
    norms = _per_model(cc, site).norm(dim=-1)
    base, ft = norms[:, 0], norms[:, 1]
    return ((base - ft) / torch.maximum(base, ft).clamp_min(1e-12) + 1) / 2


def decoder_cosine(cc: Crosscoder, site: int | str | None = None) -> Float[Tensor, " n_latents"]:
    """Cosine between each latent's base and fine-tuned decoder vectors."""
    w = _per_model(cc, site)
    return torch.nn.functional.cosine_similarity(w[:, 0], w[:, 1], dim=-1, eps=1e-12)


def classify_latents(rel: Tensor) -> list[str]:
    """Decoder-norm classes: ft_only / base_only / shared / other."""
    out = []
    for r in rel.tolist():
        if r < 0.1:
            out.append("ft_only")
        elif r > 0.9:
            out.append("base_only")
        elif abs(r - 0.5) < 0.1:
            out.append("shared")
        else:
            out.append("other")
    return out


@dataclass
class CrosscoderAnalysis:
    """Per-latent decoder statistics, classes and Latent Scaling of a crosscoder."""

    relative_norm: Tensor
    cosine: Tensor
    norm_class: list[str]
    final_class: list[str]
    frequency: Tensor
    """Fraction of analysed tokens on which each latent fired."""
    scaling: LatentScaling | None
    ratio_threshold: float
    n_tokens: int

    def latents_of(self, cls: str, *, final: bool = True) -> list[int]:
        """Latent ids in a class, most frequent first."""
        labels = self.final_class if final else self.norm_class
        ids = [i for i, c in enumerate(labels) if c == cls]
        return sorted(ids, key=lambda i: -float(self.frequency[i]))

    def counts(self, *, final: bool = True) -> dict[str, int]:
        labels = self.final_class if final else self.norm_class
        c = Counter(labels)
        return {k: c.get(k, 0) for k in LATENT_CLASSES}

    def statistics(self) -> dict[str, float]:
        """Scalar statistics compared against null controls."""
        n = max(len(self.final_class), 1)
        counts = self.counts()
        alive = self.frequency > 0
        return {
            "frac_ft_only": counts["ft_only"] / n,
            "frac_base_only": counts["base_only"] / n,
            "frac_ft_only_by_norm": self.counts(final=False)["ft_only"] / n,
            "mean_abs_rel_minus_half": float((self.relative_norm[alive] - 0.5).abs().mean())
            if bool(alive.any())
            else 0.0,
        }

    def tensors(self) -> dict[str, Tensor]:
        out = {
            "relative_norm": self.relative_norm,
            "cosine": self.cosine,
            "frequency": self.frequency,
        }
        if self.scaling is not None:
            out.update({f"scaling.{k}": v for k, v in self.scaling.tensors().items()})
        return out

    def to_json(self, top: int = 20) -> dict[str, Any]:
        def rows(cls: str) -> list[dict[str, Any]]:
            out = []
            for i in self.latents_of(cls)[:top]:
                row: dict[str, Any] = {
                    "latent": i,
                    "relative_norm": float(self.relative_norm[i]),
                    "cosine": float(self.cosine[i]),
                    "frequency": float(self.frequency[i]),
                    "norm_class": self.norm_class[i],
                }
                if self.scaling is not None:
                    row.update(self.scaling.to_json([i])[str(i)])
                out.append(row)
            return out

        return {
            "n_latents": len(self.final_class),
            "n_tokens": self.n_tokens,
            "ratio_threshold": self.ratio_threshold,
            "counts_by_norm": self.counts(final=False),
            "counts": self.counts(),
            "statistics": self.statistics(),
            "relative_norm_histogram": torch.histc(
                self.relative_norm, bins=20, min=0, max=1
            ).tolist(),
            "top_ft_only": rows("ft_only"),
            "top_base_only": rows("base_only"),
            "labels": {"final_class": self.final_class, "norm_class": self.norm_class},
        }

    @classmethod
    def from_saved(cls, meta: dict[str, Any], t: dict[str, Tensor]) -> CrosscoderAnalysis:
        scaling = None
        if "scaling.own_model" in t:
            scaling = LatentScaling.from_tensors(
                {k.removeprefix("scaling."): v for k, v in t.items() if k.startswith("scaling.")}
            )
        return cls(
            relative_norm=t["relative_norm"],
            cosine=t["cosine"],
            norm_class=list(meta["labels"]["norm_class"]),
            final_class=list(meta["labels"]["final_class"]),
            frequency=t["frequency"],
            scaling=scaling,
            ratio_threshold=float(meta["ratio_threshold"]),
            n_tokens=int(meta["n_tokens"]),
        )


@torch.no_grad()
def analyze_crosscoder(
    crosscoder: Crosscoder,
    batches: Sequence[Tensor] | Any,
    *,
    scaling: bool = True,
    ratio_threshold: float = 0.5,
    max_batches: int | None = 64,
) -> CrosscoderAnalysis:
    """Decoder-norm classes, cosines, firing frequency and Latent Scaling over ``batches``."""
    if not ratio_threshold > 0:
        raise AuditlensError("ratio_threshold must be > 0")
    data = []
    for i, b in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        data.append(b)
    if not data:
        raise AuditlensError("no batches to analyse the crosscoder on")
    rel = relative_decoder_norm(crosscoder)
    cos = decoder_cosine(crosscoder)
    fired = torch.zeros(crosscoder.n_latents)
    n = 0
    for b in data:
        f = crosscoder.encode(b)
        fired += (f > 0).sum(0).float().cpu()
        n += f.shape[0]
    frequency = fired / max(n, 1)
    norm_class = classify_latents(rel)
    ls = latent_scaling(crosscoder, data) if scaling else None
    final = list(norm_class)
    if ls is not None:
        nu = torch.maximum(ls.ratio_error.nan_to_num(0.0), ls.ratio_reconstruction.nan_to_num(0.0))
        for i, c in enumerate(norm_class):
            if c in ("ft_only", "base_only") and float(nu[i]) >= ratio_threshold:
                final[i] = "shared"
    return CrosscoderAnalysis(rel, cos, norm_class, final, frequency, ls, ratio_threshold, n)


@dataclass
class CrosscoderResult:
    """A trained crosscoder, its training log, its analysis and the null-control values."""

    training: CrosscoderTraining
    analysis: CrosscoderAnalysis
    sites: list[str]
    store: str | None = None
    control: dict[str, dict[str, float]] = field(default_factory=dict)
    """Null-control statistics by control name (e.g. ``base_vs_base``)."""

    @property
    def crosscoder(self) -> Crosscoder:
        return self.training.crosscoder

    def statistics(self) -> dict[str, float]:
        stats = dict(self.analysis.statistics())
        for key, value in self.training.final().items():
            if key.startswith("fve_") or key in ("l0", "dead_fraction"):
                stats[key] = value
        return stats

    def to_json(self) -> dict[str, Any]:
        return {
            "method": "crosscoder",
            "sites": self.sites,
            "store": self.store,
            "statistics": self.statistics(),
            "control": self.control,
            "training": self.training.to_json(),
            "analysis": self.analysis.to_json(),
        }

    def save(self, directory: str | Path) -> Path:
        """Crosscoder weights, analysis tensors (safetensors) and result JSON in one folder."""
        out = Path(directory)
        self.crosscoder.save(out / "crosscoder")
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.analysis.tensors().items()}
        save_file(tensors, str(out / "analysis.safetensors"))
        (out / "result.json").write_text(json.dumps(self.to_json(), indent=1))
        return out


def load_crosscoder_result(directory: str | Path) -> CrosscoderResult:
    """Load a :class:`CrosscoderResult` written by :meth:`CrosscoderResult.save`."""
    path = Path(directory)
    meta = _read_json(path / "result.json")
    cc = Crosscoder.load(path / "crosscoder")
    try:
        tensors = load_file(str(path / "analysis.safetensors"))
        tr = meta["training"]
        training = CrosscoderTraining(
            crosscoder=cc,
            log=list(tr["log"]),
            steps=int(tr["steps"]),
            tokens=int(tr["tokens"]),
            seconds=float(tr["seconds"]),
            resumed_from=tr.get("resumed_from"),
            train_config=dict(tr.get("train_config", {})),
        )
        analysis = CrosscoderAnalysis.from_saved(meta["analysis"], tensors)
    except (KeyError, TypeError, ValueError, OSError) as err:
        raise CheckpointError(f"{path} holds a malformed crosscoder result: {err}") from err
    return CrosscoderResult(
        training, analysis, list(meta.get("sites", [])), meta.get("store"), meta.get("control", {})
    )


def crosscoder_diff(
    store: ActivationStore,
    sites: Sequence[str] | str | None = None,
    *,
    config: CrosscoderConfig | None = None,
    train: CrosscoderTrainConfig | None = None,
    batch_size: int = 1024,
    epochs: float = 4.0,
    expansion: int = 8,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    ratio_threshold: float = 0.5,
    control: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> CrosscoderResult:
    """Train a crosscoder on a store's paired activations and analyse its latents.

    Defaults: BatchTopK, ``expansion × d_model`` latents, ``epochs`` passes; give ``config``
    / ``train`` to override. The analysis runs on up to 64 batches in another order.
    ``control`` also trains the same crosscoder on base-vs-base pairs (the base activation
    in both slots) and reports its statistics as ``control["base_vs_base"]``: the fraction
    of "exclusive" latents a crosscoder finds when nothing changed.
    """
    names = [sites] if isinstance(sites, str) else list(sites or store.sites[:1])
    if config is None:
        config = CrosscoderConfig(
            d_model=store.d_model,
            n_latents=expansion * store.d_model,
            n_sites=len(names),
            k=min(32.0, float(expansion * store.d_model) / 4),
            sites=tuple(names),
        )
    if config.n_sites != len(names):
        raise AuditlensError(f"config has n_sites={config.n_sites} but {len(names)} sites given")
    if train is None:
        steps = default_n_steps(store.n_tokens, batch_size, epochs)
        train = CrosscoderTrainConfig(
            n_steps=steps, lr=1e-3, log_every=max(1, steps // 20), seed=seed
        )
    data = store_batches(store, names, batch_size, seed=seed)
    training = train_crosscoder(
        data, config, train, checkpoint_dir=checkpoint_dir, resume=resume, progress=progress
    )
    held = store_batches(store, names, batch_size, seed=seed + 10_000, repeat=False)
    analysis = analyze_crosscoder(training.crosscoder, held, ratio_threshold=ratio_threshold)
    result = CrosscoderResult(training, analysis, names, str(store.directory))
    if control:
        null_data = (_base_twice(b) for b in store_batches(store, names, batch_size, seed=seed))
        null = train_crosscoder(null_data, config, train, progress=progress)
        null_held = (
            _base_twice(b)
            for b in store_batches(store, names, batch_size, seed=seed + 10_000, repeat=False)
        )
        null_analysis = analyze_crosscoder(
            null.crosscoder, null_held, ratio_threshold=ratio_threshold
        )
        stats = dict(null_analysis.statistics())
        stats.update({k: v for k, v in null.final().items() if k.startswith("fve_")})
        result.control["base_vs_base"] = stats
    return result


def _base_twice(batch: Tensor) -> Tensor:
    """Replace the fine-tuned slot by the base activation (``[..., 2, d]``)."""
    base = batch[..., 0:1, :]
    return torch.cat([base, base], dim=-2)
