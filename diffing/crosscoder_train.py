"""Crosscoder training from an iterator of paired activation batches, with checkpoints.

The trainer sees only ``Iterator[Tensor]`` batches of ``[batch, 2, d]`` or
``[batch, n_sites, 2, d]``; :func:`store_batches` makes one from an
:class:`~auditlens.store.ActivationStore`. Checkpoints hold the weights, the Adam state (as
safetensors tensors) and the trainer state (JSON), written atomically. Resuming skips the
batches already consumed, so a deterministic data stream gives the same result as an
uninterrupted run.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from auditlens.diffing.crosscoder_model import (
    MODEL_NAMES,
    CheckpointError,
    Crosscoder,
    CrosscoderConfig,
    _atomic_save_tensors,
    _atomic_write_text,
    _load_tensors,
    _read_json,
)
from auditlens.errors import AuditlensError, StoreError
from auditlens.hashing import sha256_file
from auditlens.progress import progress_bar
from auditlens.store import ActivationStore

__all__ = [
    "CrosscoderTrainConfig",
    "CrosscoderTrainer",
    "CrosscoderTraining",
    "store_batches",
    "train_crosscoder",
]

_CKPT = "checkpoint"
_OPTIM = "optimizer.safetensors"
_STATE = "trainer.json"


@dataclass(frozen=True)
class CrosscoderTrainConfig:
    """How to train a crosscoder (the architecture is in :class:`CrosscoderConfig`)."""

    n_steps: int
    """Optimiser steps; each consumes one batch from the data iterator."""
    lr: float = 2e-4
    """Adam learning rate (after warm-up, before decay)."""
    warmup_steps: int = 0
    """Steps of linear learning-rate warm-up from 0."""
    decay_fraction: float = 0.2
    """Final fraction of the steps over which the learning rate decays linearly to 0."""
    beta1: float = 0.9
    """Adam β1."""
    beta2: float = 0.999
    """Adam β2."""
    l1_warmup_steps: int = 0
    """L1 variant: steps over which the sparsity coefficient ramps up linearly from 0."""
    normalize: str = "shared"
    """Input scaling estimated from the first batches (``E||x||² = d``): ``shared`` (one
    scale per site for both models; keeps relative decoder norms unbiased), ``per_model``
    or ``none``."""
    n_norm_batches: int = 4
    """Batches used to estimate the input scales (they are trained on as usual)."""
    log_every: int = 100
    """Record training metrics every this many steps (and at the last step)."""
    checkpoint_every: int = 0
    """Write a checkpoint every this many steps (0: only at the end, when a folder is given)."""
    seed: int = 0
    """Seed of the weight initialisation."""
    device: str = "cpu"
    """Device to train on."""

    def __post_init__(self) -> None:
        if self.n_steps < 1:
            raise AuditlensError(f"n_steps must be >= 1, got {self.n_steps}")
        if self.lr <= 0:
            raise AuditlensError(f"lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0 or self.l1_warmup_steps < 0:
            raise AuditlensError("warm-up steps must be >= 0")
        if not 0 <= self.decay_fraction <= 1:
            raise AuditlensError("decay_fraction must be in [0, 1]")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise AuditlensError("Adam betas must be in [0, 1)")
        if self.normalize not in ("shared", "per_model", "none"):
            raise AuditlensError(
                f"normalize must be shared, per_model or none, got {self.normalize!r}"
            )
        if self.n_norm_batches < 1 or self.log_every < 1 or self.checkpoint_every < 0:
            raise AuditlensError("n_norm_batches, log_every >= 1 and checkpoint_every >= 0")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CrosscoderTrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _adam(params: list[torch.nn.Parameter], cfg: CrosscoderTrainConfig) -> torch.optim.Adam:
    kwargs: dict[str, Any] = {"lr": cfg.lr, "betas": (cfg.beta1, cfg.beta2)}
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):  # fused Adam unsupported on this device
        return torch.optim.Adam(params, **kwargs)


class CrosscoderTrainer:
    """Step-level training state: model, Adam, dead-latent counters, threshold and logs."""

    def __init__(self, crosscoder: Crosscoder, config: CrosscoderTrainConfig) -> None:
        self.model = crosscoder.to(config.device)
        self.config = config
        self.optimizer = _adam(list(self.model.parameters()), config)
        self.step_count = 0
        self.tokens = 0
        self.tokens_since_fired = torch.zeros(crosscoder.n_latents, dtype=torch.long)
        self.cutoffs: list[float] = []
        """The last two batch selection cutoffs (BatchTopK), to guess the next one."""
        self.log: list[dict[str, float]] = []

    def lr_at(self, step: int) -> float:
        """Learning rate of a step: linear warm-up, constant, linear decay to 0."""
        c = self.config
        lr = c.lr
        if c.warmup_steps and step < c.warmup_steps:
            lr *= (step + 1) / c.warmup_steps
        decay_start = c.n_steps * (1 - c.decay_fraction)
        if c.decay_fraction > 0 and step >= decay_start:
            lr *= max(0.0, (c.n_steps - step) / (c.n_steps - decay_start))
        return lr

    def l1_coefficient_at(self, step: int) -> float:
        c = self.config
        lam = self.model.config.l1_coefficient
        if c.l1_warmup_steps and step < c.l1_warmup_steps:
            return lam * (step + 1) / c.l1_warmup_steps
        return lam

    @property
    def threshold_guess(self) -> float | None:
        """A slightly low guess of the next cutoff (following a falling trend, not a rising
        one: a guess above the cutoff costs an extra pass, one below only more candidates)."""
        if not self.cutoffs:
            return None
        last = self.cutoffs[-1]
        trend = 1.0
        if len(self.cutoffs) == 2 and self.cutoffs[0] > 0:
            trend = min(max(last / self.cutoffs[0], 0.5), 1.0)
        return 0.9 * last * trend

    def dead_mask(self) -> Tensor:
        return self.tokens_since_fired >= self.model.config.dead_after_tokens

    def step(self, batch: Tensor) -> dict[str, float] | None:
        """One optimiser step on a raw batch; returns the log row when one is recorded."""
        model = self.model
        model.train()
        x = model.flatten_input(batch.to(self.config.device, non_blocking=True))
        dead = self.dead_mask().to(x.device)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step_count)
        out = model.training_loss(
            x,
            dead=dead,
            l1_coefficient=self.l1_coefficient_at(self.step_count),
            threshold_guess=self.threshold_guess,
        )
        out.loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if out.threshold is not None:
            model.update_threshold(out.threshold, self.step_count)
            self.cutoffs = [*self.cutoffs, out.threshold][-2:]
        n = x.shape[0]
        self.tokens += n
        self.tokens_since_fired += n
        self.tokens_since_fired[out.fired.cpu()] = 0
        self.step_count += 1
        last = self.step_count == self.config.n_steps
        if self.step_count % self.config.log_every and not last:
            return None
        row = {
            "step": float(self.step_count),
            "tokens": float(self.tokens),
            "loss": float(out.loss.detach()),
            "mse": float(out.mse),
            "sparsity": float(out.sparsity),
            "aux": float(out.aux),
            "l0": out.l0,
            "dead_fraction": float(self.dead_mask().float().mean()),
            "lr": self.lr_at(self.step_count - 1),
            "threshold": float(model.threshold),
            **fve_by_stream(model, x, out.recon),
        }
        self.log.append(row)
        return row

    # ---- checkpoints --------------------------------------------------------------------
    def save_checkpoint(self, directory: str | Path) -> Path:
        """Write a checkpoint under ``directory/checkpoint`` (atomic folder swap)."""
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        tmp, final, old = root / f".{_CKPT}.tmp", root / _CKPT, root / f".{_CKPT}.old"
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save(tmp)
        tensors, groups = _optimizer_tensors(self.optimizer)
        tensors["tokens_since_fired"] = self.tokens_since_fired.clone()
        _atomic_save_tensors(tensors, tmp / _OPTIM)
        state = {
            "format": 1,
            "step": self.step_count,
            "tokens": self.tokens,
            "cutoffs": self.cutoffs,
            "param_groups": groups,
            "train_config": self.config.to_json(),
            "log": self.log,
            "optimizer_sha256": sha256_file(tmp / _OPTIM),
        }
        _atomic_write_text(tmp / _STATE, json.dumps(state, indent=1))
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.replace(old)
        tmp.replace(final)
        shutil.rmtree(old, ignore_errors=True)
        return final

    @classmethod
    def from_checkpoint(
        cls, directory: str | Path, config: CrosscoderTrainConfig | None = None
    ) -> CrosscoderTrainer:
        """Rebuild a trainer from ``directory/checkpoint`` (checksums verified)."""
        path = checkpoint_path(directory)
        if path is None:
            raise CheckpointError(f"no crosscoder checkpoint in {directory}")
        state = _read_json(path / _STATE)
        try:
            saved_cfg = CrosscoderTrainConfig.from_json(state["train_config"])
            step, tokens = int(state["step"]), int(state["tokens"])
            groups = state["param_groups"]
            opt_sha = state["optimizer_sha256"]
        except (KeyError, TypeError, ValueError, AuditlensError) as err:
            raise CheckpointError(f"{path / _STATE} is malformed: {err}") from err
        model = Crosscoder.load(path)
        trainer = cls(model, config or saved_cfg)
        tensors = _load_tensors(path / _OPTIM, opt_sha)
        fired = tensors.pop("tokens_since_fired", None)
        if fired is None or fired.shape != trainer.tokens_since_fired.shape:
            raise CheckpointError(f"{path / _OPTIM} lacks a valid tokens_since_fired tensor")
        try:
            _load_optimizer(trainer.optimizer, tensors, groups)
        except (ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"{path / _OPTIM} does not fit the model: {err}") from err
        trainer.tokens_since_fired = fired.long()
        trainer.step_count, trainer.tokens = step, tokens
        trainer.cutoffs = [float(c) for c in state.get("cutoffs", [])]
        trainer.log = list(state.get("log", []))
        return trainer


def checkpoint_path(directory: str | Path) -> Path | None:
    """The checkpoint folder in ``directory`` (or the one left by an interrupted swap)."""
    root = Path(directory)
    for name in (_CKPT, f".{_CKPT}.old"):
        if (root / name / _STATE).exists() or (root / name).is_dir():
            return root / name
    return None


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], list[Any]]:
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            t = value if isinstance(value, Tensor) else torch.tensor(value)
            tensors[f"state.{pid}.{key}"] = t.detach().cpu().contiguous()
    return tensors, sd["param_groups"]


def _load_optimizer(
    opt: torch.optim.Optimizer, tensors: dict[str, Tensor], groups: list[Any]
) -> None:
    state: dict[int, dict[str, Tensor]] = {}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


@torch.no_grad()
def fve_by_stream(
    model: Crosscoder, x: Float[Tensor, "batch d_in"], recon: Float[Tensor, "batch d_in"]
) -> dict[str, float]:
    """Fraction of variance explained per model (and site, when there are several)."""
    c = model.config
    shape = (x.shape[0], c.n_sites, 2, c.d_model)
    xs, rs = x.view(shape), recon.view(shape)
    err = (xs - rs).pow(2).sum(dim=(0, 3))
    var = (xs - xs.mean(0, keepdim=True)).pow(2).sum(dim=(0, 3)).clamp_min(1e-12)
    fve = 1 - err / var
    out = {}
    for s in range(c.n_sites):
        for m, name in enumerate(MODEL_NAMES):
            suffix = "" if c.n_sites == 1 else f"@{c.sites[s] if c.sites else s}"
            out[f"fve_{name}{suffix}"] = float(fve[s, m])
    return out


@dataclass
class CrosscoderTraining:
    """A trained crosscoder with its training log and throughput."""

    crosscoder: Crosscoder
    log: list[dict[str, float]]
    steps: int
    tokens: int
    """Tokens trained on in this call (excludes steps done before a resume)."""
    seconds: float
    resumed_from: int | None = None
    train_config: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return 0.0 if self.seconds <= 0 else self.tokens / self.seconds

    def final(self) -> dict[str, float]:
        """The last logged metrics."""
        return self.log[-1] if self.log else {}

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.crosscoder.config.to_json(),
            "train_config": self.train_config,
            "steps": self.steps,
            "tokens": self.tokens,
            "seconds": self.seconds,
            "tokens_per_second": self.tokens_per_second,
            "resumed_from": self.resumed_from,
            "final": self.final(),
            "log": self.log,
        }


def train_crosscoder(
    data: Iterable[Tensor],
    config: CrosscoderConfig,
    train: CrosscoderTrainConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[CrosscoderTrainer], None] | None = None,
) -> CrosscoderTraining:
    """Train a crosscoder on ``train.n_steps`` batches from ``data``.

    With ``checkpoint_dir`` a checkpoint is written every ``train.checkpoint_every`` steps
    and at the end. ``resume=True`` continues from it, skipping the batches it consumed
    (pass the same deterministic data stream). ``callback(trainer)`` runs after every step.
    """
    found = checkpoint_path(checkpoint_dir) if checkpoint_dir is not None else None
    it: Iterator[Tensor] = iter(data)
    resumed_from = None
    if found is not None and not resume:
        raise CheckpointError(
            f"{checkpoint_dir} already holds a crosscoder checkpoint; pass resume=True "
            "(CLI: --resume) or choose another folder"
        )
    if found is not None:
        trainer = CrosscoderTrainer.from_checkpoint(checkpoint_dir, train)  # type: ignore[arg-type]
        if trainer.model.config != config:
            raise CheckpointError(
                f"the checkpoint in {checkpoint_dir} was trained with another crosscoder config"
            )
        resumed_from = trainer.step_count
        skipped = sum(1 for _ in itertools.islice(it, trainer.step_count))
        if skipped < trainer.step_count:
            raise AuditlensError("the data stream is shorter than the checkpoint's step count")
    else:
        trainer = CrosscoderTrainer(Crosscoder(config, seed=train.seed), train)
        first = list(itertools.islice(it, train.n_norm_batches))
        if not first:
            raise AuditlensError("the crosscoder's data iterator is empty")
        trainer.model.set_input_scale([b.to(train.device) for b in first], train.normalize)
        it = itertools.chain(first, it)
    start = time.perf_counter()
    begin, tokens_begin = trainer.step_count, trainer.tokens
    with progress_bar(train.n_steps - begin, "train crosscoder", enabled=progress) as advance:
        while trainer.step_count < train.n_steps:
            try:
                batch = next(it)
            except StopIteration:
                raise AuditlensError(
                    f"the data ran out after {trainer.step_count} of {train.n_steps} steps; "
                    "use a repeating iterator (store_batches(..., repeat=True)) or fewer steps"
                ) from None
            trainer.step(batch)
            step = trainer.step_count
            if checkpoint_dir is not None and (
                step == train.n_steps
                or (train.checkpoint_every and step % train.checkpoint_every == 0)
            ):
                trainer.save_checkpoint(checkpoint_dir)
            advance(1)
            if callback is not None:
                callback(trainer)
    seconds = time.perf_counter() - start
    trainer.model.eval()
    return CrosscoderTraining(
        crosscoder=trainer.model,
        log=trainer.log,
        steps=trainer.step_count,
        tokens=trainer.tokens - tokens_begin,
        seconds=seconds,
        resumed_from=resumed_from,
        train_config=train.to_json(),
    )


def store_batches(
    store: ActivationStore,
    sites: Sequence[str] | str | None = None,
    batch_size: int = 1024,
    *,
    seed: int = 0,
    repeat: bool = True,
    dtype: torch.dtype = torch.float32,
) -> Iterator[Float[Tensor, "batch ..."]]:
    """Shuffled full batches from a store: ``[b, 2, d]`` for one site, else ``[b, n_sites, 2, d]``.

    Each epoch reshuffles with ``seed + epoch``; ``repeat`` cycles epochs forever.
    """
    names = [sites] if isinstance(sites, str) else list(sites or store.sites)
    for name in names:
        if name not in store.sites:
            raise StoreError(f"site {name!r} was not harvested; this store has {store.sites}")
    if store.n_tokens < batch_size:
        raise StoreError(
            f"the store has {store.n_tokens} tokens, fewer than one batch of {batch_size}"
        )
    for epoch in itertools.count():
        iters = [
            store.iter_batches(
                n, batch_size, shuffle=True, seed=seed + epoch, dtype=dtype, drop_last=True
            )
            for n in names
        ]
        for parts in zip(*iters, strict=True):
            yield parts[0] if len(parts) == 1 else torch.stack(parts, dim=1)
        if not repeat:
            return


def default_n_steps(n_tokens: int, batch_size: int, epochs: float) -> int:
    """Steps for ``epochs`` passes over ``n_tokens`` tokens."""
    return max(1, math.ceil(epochs * n_tokens / batch_size))
