"""Steering: add, subtract, scale or project out vectors at any site, for chosen tokens.

``steer`` is a context manager over :mod:`auditlens.hooks`. It works during generation (KV
cache: the prompt is the first, uncached call; each generated token is a later call) and
during scoring forward passes. The hooks are removed on exit, exceptions included, and the
weights are never touched.

:class:`SteeringVector` is the one steering-vector type: the ADL exports one, MELBO trains
them, the perturbation runner applies them (with matched-norm random controls) and the agent
tools steer with them. Its ``norm`` is the *applied* norm, ``|coeff| · ||vector||₂``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from einops import einsum
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from auditlens.datasets import MaskSpec, PromptSet, iter_token_batches, load_prompts
from auditlens.errors import AuditlensError
from auditlens.hooks import (
    TOKEN_RANGES,
    EditFn,
    PositionTracker,
    TokenRange,
    attach_edit,
    attach_tracker,
    capture_until,
    hooks_removed,
)
from auditlens.models import ModelPair, ModelSide
from auditlens.sites import ArchSpec, Site, model_dims, parse_site, unwrap

__all__ = [
    "STEER_MODES",
    "Steer",
    "SteerMode",
    "SteeringHandle",
    "SteeringVector",
    "TokenRange",
    "as_steering_vector",
    "mean_activation_norm",
    "steer",
    "steer_pair",
]

SteerMode = Literal["add", "subtract", "scale", "project_out"]
STEER_MODES: tuple[SteerMode, ...] = ("add", "subtract", "scale", "project_out")


@dataclass(frozen=True, eq=False)
class Steer:
    """One edit of a site's hidden state ``h`` (per position, over the hidden dimension).

    ``add``: ``h + coeff·v``. ``subtract``: ``h - coeff·v``. ``scale``: the component of ``h``
    in span(v) is multiplied by ``coeff``. ``project_out``: ``h - coeff·proj_v(h)`` (coeff 1
    removes it). ``scale``/``project_out`` accept ``[n, d]`` (a subspace); add/subtract ``[d]``.
    """

    site: str | Site
    """Canonical site name, e.g. ``blocks.5.hook_resid_post`` (negative layers allowed)."""
    vector: Tensor
    """The direction: ``[d_model]``, or ``[n, d_model]`` for scale/project_out. May require grad."""
    mode: SteerMode = "add"
    """One of add, subtract, scale, project_out."""
    coeff: float = 1.0
    """Strength (add/subtract), factor (scale) or fraction removed (project_out)."""
    tokens: TokenRange = "all"
    """Which positions: ``prompt``, ``generated`` or ``all``."""

    def __post_init__(self) -> None:
        if self.mode not in STEER_MODES:
            raise AuditlensError(f"unknown steering mode {self.mode!r}; choose {STEER_MODES}")
        if self.tokens not in TOKEN_RANGES:
            raise AuditlensError(f"unknown token range {self.tokens!r}; choose {TOKEN_RANGES}")
        if not isinstance(self.vector, Tensor) or not self.vector.is_floating_point():
            raise AuditlensError("a steering vector must be a floating-point tensor")
        if self.vector.dim() not in (1, 2) or (
            self.vector.dim() == 2 and self.mode in ("add", "subtract")
        ):
            raise AuditlensError(
                f"{self.mode} needs a [d_model] vector, got shape {tuple(self.vector.shape)}"
            )
        if not math.isfinite(self.coeff) or not bool(torch.isfinite(self.vector.detach()).all()):
            raise AuditlensError("steering vector and coefficient must be finite")
        if self.mode in ("scale", "project_out") and float(self.vector.detach().norm()) == 0.0:
            raise AuditlensError(f"{self.mode} needs a non-zero vector")

    @property
    def d_model(self) -> int:
        return int(self.vector.shape[-1])


def _orthonormal_basis(vectors: Tensor) -> Float[Tensor, "n d"]:
    rows = vectors.detach().reshape(-1, vectors.shape[-1]).double()
    q, r = torch.linalg.qr(rows.T)
    keep = r.diagonal().abs() > 1e-10 * r.diagonal().abs().max()
    return q.T[keep].to(vectors.dtype)


def _make_edit(spec: Steer, tracker: PositionTracker) -> EditFn:
    basis = _orthonormal_basis(spec.vector) if spec.mode in ("scale", "project_out") else None

    def edit(hidden: Tensor) -> Tensor:
        if spec.mode in ("add", "subtract"):
            sign = 1.0 if spec.mode == "add" else -1.0
            edited = hidden + (sign * spec.coeff) * spec.vector.to(hidden.dtype).to(hidden.device)
        else:
            assert basis is not None
            q = basis.to(device=hidden.device, dtype=hidden.dtype)
            coords = einsum(hidden, q, "b s d, n d -> b s n")
            proj = einsum(coords, q, "b s n, n d -> b s d")
            factor = spec.coeff - 1.0 if spec.mode == "scale" else -spec.coeff
            edited = hidden + factor * proj
        mask = tracker.select(spec.tokens, hidden)
        return edited if mask is None else torch.where(mask, edited, hidden)

    return edit


class SteeringHandle:
    """What ``steer`` yields: set per-row prompt lengths for uncached scoring passes."""

    def __init__(self, tracker: PositionTracker) -> None:
        self._tracker = tracker

    @property
    def prompt_lengths(self) -> Tensor | None:
        return self._tracker.prompt_lengths

    @prompt_lengths.setter
    def prompt_lengths(self, lengths: Sequence[int] | Tensor | None) -> None:
        """Rows' prompt lengths: positions ``>= length`` count as generated (None: automatic)."""
        self._tracker.prompt_lengths = (
            None if lengths is None else torch.as_tensor(lengths, dtype=torch.long).reshape(-1)
        )


def _root(side: ModelSide | nn.Module) -> nn.Module:
    return side.hf if isinstance(side, ModelSide) else unwrap(side)


@contextmanager
def steer(
    side: ModelSide | nn.Module,
    arch: ArchSpec,
    steers: Steer | Sequence[Steer],
    *,
    prompt_lengths: Sequence[int] | Tensor | None = None,
) -> Iterator[SteeringHandle]:
    """Apply steering edits to every forward pass (generation or scoring) inside the block.

    Run the model inside ``side.active()`` as usual; edits at one site apply in list order.
    """
    root = _root(side)
    n_layers, d_model = model_dims(root)
    specs = [steers] if isinstance(steers, Steer) else list(steers)
    sites = [parse_site(s.site, n_layers) for s in specs]
    for spec in specs:
        if spec.d_model != d_model:
            raise AuditlensError(
                f"steering vector has width {spec.d_model} but the model's d_model is {d_model}"
            )
    tracker = PositionTracker()
    handle = SteeringHandle(tracker)
    handle.prompt_lengths = prompt_lengths
    with hooks_removed([]) as handles:
        handles.append(attach_tracker(root, arch, tracker))
        for site, spec in zip(sites, specs, strict=True):
            handles.append(attach_edit(root, arch, site, _make_edit(spec, tracker)))
        yield handle


def steer_pair(
    pair: ModelPair,
    steers: Steer | Sequence[Steer],
    *,
    side: Literal["base", "finetuned"] = "finetuned",
    prompt_lengths: Sequence[int] | Tensor | None = None,
) -> Any:
    """``steer`` on one side of a pair (default: the fine-tuned side)."""
    chosen = pair.finetuned if side == "finetuned" else pair.base
    return steer(chosen, pair.arch, steers, prompt_lengths=prompt_lengths)


@dataclass(frozen=True, eq=False)
class SteeringVector:
    """A vector to apply at a site: MELBO and ADL vectors, random controls, agent vectors."""

    site: str
    """Canonical site name, e.g. ``blocks.15.hook_resid_post``."""
    vector: Tensor
    """``[d_model]`` direction, in raw activation units."""
    coeff: float = 1.0
    """Multiplier of the vector when applied."""
    mode: SteerMode = "add"
    """Steering mode (see :class:`Steer`)."""
    tokens: TokenRange = "all"
    """Which positions are steered."""
    name: str = "steering"
    """Row label in result tables."""
    kind: str = "steering"
    """Perturbation family, e.g. ``melbo``, ``adl``, ``random_control``."""
    provenance: dict[str, Any] = field(default_factory=dict)
    """Where it came from: method, models, prompts, settings, index or seed."""

    def __post_init__(self) -> None:
        Steer(self.site, self.vector, self.mode, self.coeff, self.tokens)  # validates

    @property
    def norm(self) -> float:
        """The applied norm ``|coeff| · ||vector||₂`` (what a matched-norm control must have)."""
        return abs(self.coeff) * float(self.vector.detach().float().norm())

    def apply(self, side: ModelSide | nn.Module, arch: ArchSpec) -> Any:
        """The steering context for this perturbation."""
        return steer(side, arch, Steer(self.site, self.vector, self.mode, self.coeff, self.tokens))

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "norm": self.norm,
            "d_model": int(self.vector.numel()),
            "coeff": self.coeff,
            "mode": self.mode,
            "tokens": self.tokens,
            "name": self.name,
            "kind": self.kind,
            "provenance": self.provenance,
        }

    def save(self, directory: str | Path) -> Path:
        """``steering_vector.safetensors`` + ``steering_vector.json`` in ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        save_file(
            {"vector": self.vector.detach().cpu().contiguous()},
            str(out / "steering_vector.safetensors"),
        )
        (out / "steering_vector.json").write_text(json.dumps(self.to_json(), indent=1))
        return out

    @classmethod
    def load(cls, directory: str | Path) -> SteeringVector:
        path = Path(directory)
        try:
            meta = json.loads((path / "steering_vector.json").read_text())
            vector = load_file(str(path / "steering_vector.safetensors"))["vector"]
        except (OSError, KeyError, ValueError) as err:
            raise AuditlensError(f"{path} holds no readable steering vector: {err}") from err
        return cls(
            meta["site"], vector, float(meta.get("coeff", 1.0)), meta.get("mode", "add"),
            meta.get("tokens", "all"), meta.get("name", "steering"),
            meta.get("kind", "steering"), meta.get("provenance", {}),
        )  # fmt: skip


def as_steering_vector(
    obj: Any, *, name: str | None = None, kind: str | None = None
) -> SteeringVector:
    """Wrap anything with ``.site: str`` and ``.vector: Tensor`` (e.g. an ADL vector)."""
    if isinstance(obj, SteeringVector):
        return obj
    site, vector = getattr(obj, "site", None), getattr(obj, "vector", None)
    if site is None or not isinstance(vector, Tensor):
        raise AuditlensError(
            f"{type(obj).__name__} has no .site and .vector: not a steering vector"
        )
    return SteeringVector(
        str(site),
        vector.detach().reshape(-1),
        coeff=float(getattr(obj, "coeff", 1.0)),
        name=name or str(getattr(obj, "name", type(obj).__name__)),
        kind=kind or str(getattr(obj, "kind", "steering")),
    )


def mean_activation_norm(
    side: ModelSide,
    arch: ArchSpec,
    tokenizer: Any,
    prompts: PromptSet | Sequence[Any] | str,
    site: str | Site,
    *,
    batch_size: int = 8,
    max_length: int = 256,
) -> float:
    """Mean ``||h||₂`` (over the hidden dim) at a site over non-pad prompt tokens."""
    root = side.hf
    n_layers, _ = model_dims(root)
    parsed = parse_site(site, n_layers)
    device = next(root.parameters()).device
    total, count = 0.0, 0
    batches = iter_token_batches(
        load_prompts(prompts),
        tokenizer,
        batch_size=batch_size,
        mask=MaskSpec(),
        max_length=max_length,
    )
    with side.active(), torch.no_grad():
        for batch in batches:
            ids, attn = batch.input_ids.to(device), batch.attention_mask.to(device)
            hidden = capture_until(
                root,
                arch,
                parsed,
                partial(root, input_ids=ids, attention_mask=attn),
            )
            norms = hidden.float().norm(dim=-1)
            keep = attn.bool()
            total += float(norms[keep].sum())
            count += int(keep.sum())
    if count == 0:
        raise AuditlensError("no tokens to measure the activation norm on")
    return total / count
