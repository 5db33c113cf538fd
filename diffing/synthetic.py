"""Ground truth for diffing methods: synthetic paired activations and planted model features.

:func:`synthetic_pairs`: each token is a sparse sum of unit feature directions. Shared
features appear with the same direction in both models, ``ft_only`` features only in the
fine-tuned model's activation, ``base_only`` only in the base model's. A crosscoder should
find one latent per feature with the matching decoder-norm class.

:func:`plant_feature`: hooks (:mod:`auditlens.hooks`) that add a known vector to a real
model's block output on chosen tokens, so that a "fine-tuned" copy differs from its base in a
known way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from auditlens.errors import AuditlensError
from auditlens.hooks import PositionTracker, attach_edit, attach_input_ids
from auditlens.sites import arch_spec, model_dims, parse_site, unwrap

__all__ = ["PlantedFeature", "SyntheticPairs", "plant_feature", "synthetic_pairs"]


@dataclass
class SyntheticPairs:
    """Paired activations ``[n, 2, d]`` and the planted unit directions by kind."""

    acts: Float[Tensor, "n 2 d_model"]
    shared: Float[Tensor, "n_shared d_model"]
    ft_only: Float[Tensor, "n_ft d_model"]
    base_only: Float[Tensor, "n_base d_model"]
    active: Tensor
    """``[n, n_features]`` bool: which features are on (order: shared, ft_only, base_only)."""

    def batches(self, batch_size: int, *, seed: int = 0, repeat: bool = True) -> Iterator[Tensor]:
        """Shuffled batches (reshuffled each epoch with ``seed + epoch``)."""
        epoch = 0
        n = self.acts.shape[0]
        while True:
            gen = torch.Generator().manual_seed(seed + epoch)
            perm = torch.randperm(n, generator=gen)
            for lo in range(0, n - batch_size + 1, batch_size):
                yield self.acts[perm[lo : lo + batch_size]]
            epoch += 1
            if not repeat:
                return


def synthetic_pairs(
    n_tokens: int,
    d_model: int,
    *,
    n_shared: int = 24,
    n_ft_only: int = 2,
    n_base_only: int = 2,
    p_active: float = 0.05,
    magnitude: float = 3.0,
    noise: float = 0.05,
    seed: int = 0,
) -> SyntheticPairs:
    """Tokens with sparse planted features (random unit directions, fixed ``magnitude``)."""
    n_feat = n_shared + n_ft_only + n_base_only
    if n_tokens < 1 or d_model < 1 or n_feat < 1 or not 0 < p_active <= 1:
        raise AuditlensError("synthetic_pairs needs n_tokens, d_model, features >= 1, p in (0, 1]")
    gen = torch.Generator().manual_seed(seed)
    dirs = torch.randn(n_feat, d_model, generator=gen)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    active = torch.rand(n_tokens, n_feat, generator=gen) < p_active
    coef = active.float() * magnitude * (0.5 + torch.rand(n_tokens, n_feat, generator=gen))
    in_base = torch.ones(n_feat)
    in_ft = torch.ones(n_feat)
    in_base[n_shared : n_shared + n_ft_only] = 0
    in_ft[n_shared + n_ft_only :] = 0
    base = (coef * in_base) @ dirs
    ft = (coef * in_ft) @ dirs
    acts = torch.stack([base, ft], dim=1)
    acts = acts + noise * torch.randn(acts.shape, generator=gen)
    return SyntheticPairs(
        acts=acts,
        shared=dirs[:n_shared],
        ft_only=dirs[n_shared : n_shared + n_ft_only],
        base_only=dirs[n_shared + n_ft_only :],
        active=active,
    )


@dataclass
class PlantedFeature:
    """A feature planted into a model by forward hooks; :meth:`remove` undoes it."""

    layer: int
    direction: Float[Tensor, " d_model"]
    magnitude: float
    token_ids: tuple[int, ...] | None
    handles: list[Any]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


def plant_feature(
    model: nn.Module,
    layer: int,
    direction: Float[Tensor, " d_model"],
    magnitude: float,
    token_ids: Sequence[int] | None = None,
    *,
    jitter: float = 0.0,
) -> PlantedFeature:
    """Shift ``blocks.{layer}.hook_resid_post`` by ``magnitude · direction``.

    With ``token_ids`` only at positions holding one of those tokens (the ids the input
    embedding reads, via :func:`auditlens.hooks.attach_input_ids`); otherwise at every
    position. The vector is added to the
    block's MLP output (the last term of the residual sum in pre-norm blocks), so the
    resid_post read by any backend differs from the original model's by exactly this vector
    (nnsight reads a module's output before that module's own forward hooks run).

    ``jitter`` in [0, 1] scales the magnitude per position by ``1 + jitter · ξ`` with ξ in
    [-1, 1] a fixed hash of (position, token id): the feature's strength then varies
    independently of token identity, as real features do (a dictionary cannot fold it into
    a token latent).
    """
    root = unwrap(model)
    arch = arch_spec(root)
    n_layers, d_model = model_dims(root)
    if direction.shape != (d_model,):
        raise AuditlensError(f"direction has shape {list(direction.shape)}; expected [{d_model}]")
    if not 0 <= jitter <= 1:
        raise AuditlensError(f"jitter must be in [0, 1], got {jitter}")
    site = parse_site(f"blocks.{layer}.hook_mlp_out", n_layers)
    vec = (magnitude * direction).detach()
    ids = torch.tensor(list(token_ids)) if token_ids is not None else None
    tracker = PositionTracker()  # records the token ids the embedding reads

    def add(h: Tensor) -> Tensor:
        delta = vec.to(h.device, h.dtype)
        weight = torch.ones(h.shape[:-1], device=h.device, dtype=h.dtype)
        if ids is not None or jitter:
            if tracker.input_ids is None:
                raise AuditlensError("a planted feature on chosen tokens needs input_ids")
            tok = tracker.input_ids.to(h.device)
            if ids is not None:
                weight = weight * torch.isin(tok, ids.to(h.device)).to(h.dtype)
            if jitter:
                pos = torch.arange(h.shape[-2], device=h.device, dtype=torch.float64)
                hashed = torch.sin(pos * 12.9898 + tok.double() * 78.233) * 43758.5453
                xi = torch.frac(hashed).abs() * 2 - 1
                weight = weight * (1 + jitter * xi).to(h.dtype)
        return h + weight.unsqueeze(-1) * delta

    handles = [attach_input_ids(root, tracker), attach_edit(root, arch, site, add)]
    tids = tuple(int(t) for t in token_ids) if token_ids is not None else None
    return PlantedFeature(layer, direction.detach().clone(), magnitude, tids, handles)
