"""MELBO: unsupervised steering vectors (Mack & Turner), trained K at a time in one batch.

A bias ``θ`` with ``||θ|| = R`` is added at the source site at every position. It is trained to
maximise ``(Σ_positions ||h_target(θ) - h_target(0)||₂^p)^(1/q)`` at a later target site, where
the norm is over the hidden dimension and the sum runs over every prompt's target positions.
The K vectors are a batch dimension: the prompt batch is repeated K times and block k of rows
gets ``θ_k``. After each backward pass every gradient is projected onto the sphere's tangent
space and orthogonal to all current vectors; after each AdamW step the vectors are
Gram-Schmidt orthogonalised in index order and rescaled to radius R.

On a fine-tuned model against its base (``base_weight=λ``), the objective is
``objective_ft - λ·objective_base``: vectors that change the fine-tuned model much more than
the base.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from einops import rearrange, repeat
from jaxtyping import Bool, Float
from safetensors.torch import load_file, save_file
from torch import Tensor

from auditlens.adversary._jsonsafe import json_safe
from auditlens.datasets import MaskSpec, PromptSet, iter_token_batches, load_prompts
from auditlens.errors import AuditlensError
from auditlens.generate import generate
from auditlens.hooks import capture_until
from auditlens.models import ModelPair, ModelSide
from auditlens.progress import progress_bar
from auditlens.sites import Site, parse_site
from auditlens.steering import Steer, SteeringVector, mean_activation_norm, steer

__all__ = [
    "MelboConfig",
    "MelboResult",
    "default_melbo_sites",
    "melbo_objective",
    "train_melbo",
]

SideName = Literal["base", "finetuned"]


def default_melbo_sites(n_layers: int) -> tuple[str, str]:
    """(source, target): MLP output of layer ``s = round(7·n/32)``, residual output of ``n - 8``.

    Mack & Turner use source layer 7 and target layer n_layers-8 on 24-40 layer models; the
    source is scaled to depth (7 on a 30-layer model). Models too shallow for ``n - 8 > s``
    get a target 3/4 deep; at least one whole block always lies between source and target.
    """
    if n_layers < 2:
        raise AuditlensError("MELBO's default sites need at least 2 layers; pass source/target")
    source = min(n_layers - 2, round(7 * n_layers / 32))
    target = n_layers - 8 if n_layers - 8 > source else max(source + 1, round(0.75 * n_layers))
    target = min(target, n_layers - 1)
    return f"blocks.{source}.hook_mlp_out", f"blocks.{target}.hook_resid_post"


@dataclass(frozen=True)
class MelboConfig:
    """Settings of one MELBO run (defaults from Mack & Turner unless noted)."""

    n_vectors: int = 32
    """K, the number of mutually orthogonal vectors trained together."""
    radius: float = 1.0
    """R: a fraction of the source site's mean activation norm (relative=True) or absolute."""
    relative: bool = True
    """Whether ``radius`` is relative to the mean ``||h_source||`` over the prompt tokens."""
    source: str | None = None
    """Site where θ is added; None: ``default_melbo_sites`` (an MLP output ~7/32 deep)."""
    target: str | None = None
    """Site whose change is maximised; None: ``default_melbo_sites`` (output of n_layers-8)."""
    p: float = 2.0
    """Exponent on each position's hidden-dimension norm."""
    q: float | None = None
    """Outer root of the summed powers; None means q = p."""
    steps: int = 300
    """Optimiser steps."""
    lr: float = 1e-3
    """AdamW learning rate."""
    betas: tuple[float, float] = (0.9, 0.98)
    """AdamW betas."""
    weight_decay: float = 0.0
    """AdamW weight decay (0: the sphere constraint already fixes the norm)."""
    seed: int = 0
    """Seed of the random initial vectors."""
    base_weight: float | None = None
    """λ: None trains on one side; a number maximises objective_ft - λ·objective_base."""
    target_positions: int | None = None
    """None: every prompt token is a target position; k: the last k prompt tokens only."""
    max_length: int = 128
    """Prompt tokens kept per prompt."""
    vectors_per_pass: int | None = None
    """Vectors per forward pass (memory knob; exact); None: all K in one pass."""
    max_new_tokens: int = 48
    """Tokens generated per prompt for each vector (0: no generations)."""
    generation_batch_size: int = 8
    """Prompts per generation batch."""

    def __post_init__(self) -> None:
        if self.n_vectors < 1:
            raise AuditlensError(f"n_vectors must be >= 1, got {self.n_vectors}")
        if not (self.radius > 0 and math.isfinite(self.radius)):
            raise AuditlensError(f"radius must be positive, got {self.radius}")
        if self.p <= 0 or (self.q is not None and self.q <= 0):
            raise AuditlensError("p and q must be positive")
        if self.steps < 1:
            raise AuditlensError(f"steps must be >= 1, got {self.steps}")
        if self.lr <= 0 or not all(0 <= b < 1 for b in self.betas) or self.weight_decay < 0:
            raise AuditlensError("need lr > 0, betas in [0, 1) and weight_decay >= 0")
        if self.base_weight is not None and self.base_weight < 0:
            raise AuditlensError(f"base_weight must be >= 0, got {self.base_weight}")
        if self.target_positions is not None and self.target_positions < 1:
            raise AuditlensError("target_positions must be None or >= 1")
        if self.max_length < 1 or self.max_new_tokens < 0 or self.generation_batch_size < 1:
            raise AuditlensError("need max_length >= 1, max_new_tokens >= 0, batch size >= 1")
        if self.vectors_per_pass is not None and self.vectors_per_pass < 1:
            raise AuditlensError("vectors_per_pass must be None or >= 1")

    @property
    def q_value(self) -> float:
        return self.p if self.q is None else self.q

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MelboResult:
    """K learned vectors, their objective curves and their generations on the prompts."""

    vectors: Float[Tensor, "k d"]
    objective: Float[Tensor, "steps k"]
    """The trained objective at each step, before that step's update."""
    source: str
    target: str
    radius: float
    """Absolute radius R of every vector."""
    mean_source_norm: float
    """Mean ``||h_source||`` over prompt tokens (the unit of a relative radius)."""
    config: MelboConfig
    side: str
    prompts_sha256: str
    objective_finetuned: Float[Tensor, "steps k"] | None = None
    """Pair mode: the fine-tuned side's own objective."""
    objective_base: Float[Tensor, "steps k"] | None = None
    """Pair mode: the base side's objective (subtracted with weight λ)."""
    generations: list[list[str]] = field(default_factory=list)
    """``generations[k][i]``: vector k's completion of prompt i."""
    baseline_generations: list[str] = field(default_factory=list)
    """Unsteered completions of the same prompts."""
    seconds: float = 0.0
    implementation: str = "batched"

    @property
    def final_objective(self) -> Float[Tensor, " k"]:
        return self.objective[-1]

    def steering_vectors(self, coeff: float = 1.0) -> list[SteeringVector]:
        """The vectors as runner perturbations at the source site."""
        return [
            SteeringVector(
                self.source,
                v.clone(),
                coeff=coeff,
                name=f"melbo_{k}",
                kind="melbo",
                provenance={"method": "melbo", "index": k},
            )
            for k, v in enumerate(self.vectors)
        ]

    def to_json(self, *, include_generations: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": "melbo",
            "implementation": self.implementation,
            "side": self.side,
            "source": self.source,
            "target": self.target,
            "radius": self.radius,
            "mean_source_norm": self.mean_source_norm,
            "config": self.config.to_json(),
            "prompts_sha256": self.prompts_sha256,
            "n_vectors": int(self.vectors.shape[0]),
            "d_model": int(self.vectors.shape[1]),
            "final_objective": [float(x) for x in self.final_objective],
            "initial_objective": [float(x) for x in self.objective[0]],
            "seconds": self.seconds,
        }
        if include_generations:
            out["generations"] = self.generations
            out["baseline_generations"] = self.baseline_generations
        return json_safe(out)  # type: ignore[no-any-return]

    def save(self, directory: str | Path) -> Path:
        """Write ``melbo.safetensors`` (vectors, curves) and ``melbo.json``; returns the folder."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {"vectors": self.vectors, "objective": self.objective}
        if self.objective_finetuned is not None and self.objective_base is not None:
            tensors |= {"objective_finetuned": self.objective_finetuned}
            tensors |= {"objective_base": self.objective_base}
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in tensors.items()},
            folder / "melbo.safetensors",
        )
        (folder / "melbo.json").write_text(json.dumps(self.to_json(), indent=2))
        return folder

    @classmethod
    def load(cls, directory: str | Path) -> MelboResult:
        """Read a result written by :meth:`save`."""
        folder = Path(directory)
        meta = json.loads((folder / "melbo.json").read_text())
        tensors = load_file(folder / "melbo.safetensors")
        cfg = dict(meta["config"])
        cfg["betas"] = tuple(cfg["betas"])
        return cls(
            vectors=tensors["vectors"],
            objective=tensors["objective"],
            source=meta["source"],
            target=meta["target"],
            radius=meta["radius"],
            mean_source_norm=meta["mean_source_norm"],
            config=MelboConfig(**cfg),
            side=meta["side"],
            prompts_sha256=meta["prompts_sha256"],
            objective_finetuned=tensors.get("objective_finetuned"),
            objective_base=tensors.get("objective_base"),
            generations=meta.get("generations", []),
            baseline_generations=meta.get("baseline_generations", []),
            seconds=meta.get("seconds", 0.0),
            implementation=meta.get("implementation", "batched"),
        )


def melbo_objective(
    steered: Float[Tensor, "k batch seq d"],
    clean: Float[Tensor, "batch seq d"],
    mask: Bool[Tensor, "batch seq"],
    p: float,
    q: float,
) -> Float[Tensor, " k"]:
    """``(Σ_{prompt, position} ||steered - clean||₂^p)^(1/q)`` per vector (norm over hidden)."""
    squared = (steered - clean[None]).pow(2).sum(-1)
    powered = squared.clamp_min(1e-30).pow(p / 2) * mask[None].to(squared.dtype)
    return powered.sum(dim=(1, 2)).pow(1.0 / q)


@dataclass
class _Setup:
    """Everything both implementations share: sides, sites, tokens, clean targets, radius."""

    sides: list[tuple[ModelSide, float]]
    source: Site
    target: Site
    input_ids: Tensor
    attention_mask: Tensor
    target_mask: Tensor
    clean: list[Tensor]
    radius: float
    mean_norm: float
    d_model: int
    dtype: torch.dtype
    prompts: PromptSet


def _prepare(pair: ModelPair, prompts: Any, config: MelboConfig, side: SideName) -> _Setup:
    prompt_set = load_prompts(prompts)
    main = pair.finetuned if side == "finetuned" else pair.base
    sides: list[tuple[ModelSide, float]] = [(main, 1.0)]
    if config.base_weight is not None:
        if side != "finetuned":
            raise AuditlensError("base_weight (contrast with the base) needs side='finetuned'")
        sides.append((pair.base, -config.base_weight))
    default_source, default_target = default_melbo_sites(pair.n_layers)
    source = parse_site(config.source or default_source, pair.n_layers)
    target = parse_site(config.target or default_target, pair.n_layers)
    if not source < target:
        raise AuditlensError(f"the target site {target} must come after the source {source}")
    if config.n_vectors >= pair.d_model:
        raise AuditlensError(f"n_vectors must be below d_model ({pair.d_model})")
    mask = MaskSpec("last_k", config.target_positions) if config.target_positions else MaskSpec()
    (batch,) = iter_token_batches(
        prompt_set,
        pair.tokenizer,
        batch_size=len(prompt_set),
        mask=mask,
        max_length=config.max_length,
    )
    device = pair.device
    ids, attn = batch.input_ids.to(device), batch.attention_mask.to(device)
    target_mask = (batch.token_mask & batch.attention_mask.bool()).to(device)
    model_dtype = next(main.hf.parameters()).dtype
    dtype = torch.float64 if model_dtype == torch.float64 else torch.float32
    clean = []
    for model_side, _ in sides:
        with model_side.active(), torch.no_grad():
            hf = model_side.hf
            h = capture_until(
                hf, pair.arch, target, partial(hf, input_ids=ids, attention_mask=attn)
            )
        clean.append(h.to(dtype))
    mean_norm = mean_activation_norm(
        main, pair.arch, pair.tokenizer, prompt_set, source, max_length=config.max_length
    )
    radius = config.radius * mean_norm if config.relative else config.radius
    return _Setup(
        sides,
        source,
        target,
        ids,
        attn,
        target_mask,
        clean,
        radius,
        mean_norm,
        pair.d_model,
        dtype,
        prompt_set,
    )


def _initial_vectors(k: int, d_model: int, radius: float, seed: int, dtype: torch.dtype) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    raw = torch.randn(k, d_model, generator=gen, dtype=torch.float64)
    return _gram_schmidt(raw, radius).to(dtype)


def _gram_schmidt(vectors: Float[Tensor, "k d"], radius: float) -> Float[Tensor, "k d"]:
    """Orthogonalise rows in index order (modified Gram-Schmidt) and scale each to ``radius``."""
    units: list[Tensor] = []
    for row in vectors:
        v = row.clone()
        for u in units:
            v = v - (v @ u) * u
        units.append(v / v.norm())
    return torch.stack(units) * radius


def _finish(
    pair: ModelPair,
    setup: _Setup,
    config: MelboConfig,
    side: SideName,
    vectors: Tensor,
    curves: list[Tensor],
    started: float,
    implementation: str,
) -> MelboResult:
    objective = torch.stack([c[0] for c in curves])
    per_side = [torch.stack([c[i + 1] for c in curves]) for i in range(len(setup.sides))]
    result = MelboResult(
        vectors=vectors.detach().cpu(),
        objective=objective.cpu(),
        source=setup.source.name,
        target=setup.target.name,
        radius=setup.radius,
        mean_source_norm=setup.mean_norm,
        config=config,
        side=side if config.base_weight is None else "finetuned_vs_base",
        prompts_sha256=setup.prompts.sha256,
        objective_finetuned=per_side[0].cpu() if len(per_side) == 2 else None,
        objective_base=per_side[1].cpu() if len(per_side) == 2 else None,
        implementation=implementation,
    )
    result.seconds = time.perf_counter() - started
    if config.max_new_tokens > 0:
        main = setup.sides[0][0]
        opts: dict[str, Any] = {
            "max_new_tokens": config.max_new_tokens,
            "batch_size": config.generation_batch_size,
        }
        result.baseline_generations = generate(main, pair.tokenizer, setup.prompts, **opts)
        with progress_bar(len(vectors), "MELBO generations") as advance:
            for vector in result.vectors:
                with steer(main, pair.arch, Steer(setup.source, vector.to(pair.device))):
                    result.generations.append(generate(main, pair.tokenizer, setup.prompts, **opts))
                advance(1)
    return result


def train_melbo(
    pair: ModelPair,
    prompts: PromptSet | Sequence[Any] | str,
    config: MelboConfig | None = None,
    *,
    side: SideName = "finetuned",
) -> MelboResult:
    """Train K MELBO vectors together, one batched forward (per side) per step."""
    config = config or MelboConfig()
    started = time.perf_counter()
    setup = _prepare(pair, prompts, config, side)
    k_total, q = config.n_vectors, config.q_value
    theta = torch.nn.Parameter(
        _initial_vectors(k_total, setup.d_model, setup.radius, config.seed, setup.dtype).to(
            pair.device
        )
    )
    optimizer = torch.optim.AdamW(
        [theta], lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    chunk = config.vectors_per_pass or k_total
    n_rows = setup.input_ids.shape[0]
    curves: list[Tensor] = []
    with progress_bar(config.steps, "MELBO (batched)") as advance:
        for _ in range(config.steps):
            optimizer.zero_grad(set_to_none=True)
            per_side = [torch.zeros(k_total, dtype=setup.dtype) for _ in setup.sides]
            for lo in range(0, k_total, chunk):
                block = theta[lo : lo + chunk]
                kb = block.shape[0]
                ids = repeat(setup.input_ids, "b s -> (k b) s", k=kb)
                attn = repeat(setup.attention_mask, "b s -> (k b) s", k=kb)

                def add_bias(hidden: Tensor, block: Tensor = block, kb: int = kb) -> Tensor:
                    grouped = rearrange(hidden, "(k b) s d -> k b s d", k=kb)
                    shifted = grouped + block.to(hidden.dtype)[:, None, None, :]
                    return rearrange(shifted, "k b s d -> (k b) s d")

                for i, (model_side, weight) in enumerate(setup.sides):
                    hf = model_side.hf
                    with model_side.active():
                        h = capture_until(
                            hf,
                            pair.arch,
                            setup.target,
                            partial(hf, input_ids=ids, attention_mask=attn),
                            edits=[(setup.source, add_bias)],
                        )
                    steered = rearrange(h.to(setup.dtype), "(k b) s d -> k b s d", b=n_rows)
                    obj = melbo_objective(steered, setup.clean[i], setup.target_mask, config.p, q)
                    per_side[i][lo : lo + kb] = obj.detach().cpu()
                    (-weight * obj.sum()).backward(inputs=[theta])  # grads accumulate
            combined = sum(
                (w * o for (_, w), o in zip(setup.sides, per_side, strict=True)),
                torch.zeros(k_total, dtype=setup.dtype),
            )
            curves.append(torch.stack([combined, *per_side]))
            with torch.no_grad():
                assert theta.grad is not None
                units = theta / theta.norm(dim=-1, keepdim=True)
                theta.grad -= (theta.grad @ units.T) @ units
            optimizer.step()
            with torch.no_grad():
                theta.copy_(_gram_schmidt(theta.detach(), setup.radius))
            advance(1)
    return _finish(pair, setup, config, side, theta.detach(), curves, started, "batched")
