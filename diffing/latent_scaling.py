"""Latent Scaling: how much of a crosscoder latent each model really carries.

For latent ``j`` with activation ``f_j`` and decoder direction ``d`` (that of the model whose
decoder vector is larger, its *own* model), fit the scalar ``β`` that best explains a target
``y^m`` of each model ``m`` in closed form (least squares over tokens)::

    β^m = Σ_x f_j(x) <d, y^m(x)> / (||d||² Σ_x f_j(x)²)

with two targets:

- error: ``y^m = x^m - x̂^m + f_j d_j^m``, the activation minus the reconstruction by all
  other latents (is the direction present in model ``m`` at all?);
- reconstruction: ``y^m = x̂^m - b_dec^m``, the crosscoder's reconstruction (does the
  dictionary, through latent ``j`` or others, carry the direction for model ``m``?).

The ratio ``ν = β^other / β^own`` is ~0 for a latent truly specific to its own model and
~1 when the other model carries it too, e.g. an L1 "ft-only" latent whose base decoder
shrank to zero although the base model has the feature (a false exclusive latent).
Everything is computed in raw activation units.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import einops
import torch
from jaxtyping import Float
from torch import Tensor

from auditlens.diffing.crosscoder_model import MODEL_NAMES, Crosscoder

__all__ = ["LatentScaling", "latent_scaling"]


@dataclass
class LatentScaling:
    """β per latent, target and model, and the other/own ratios ν."""

    own_model: Tensor
    """``[n_latents]`` 0 (base) or 1 (fine-tuned): whose decoder direction was used."""
    beta_error: Float[Tensor, "n_latents 2"]
    beta_reconstruction: Float[Tensor, "n_latents 2"]
    ratio_error: Float[Tensor, " n_latents"]
    ratio_reconstruction: Float[Tensor, " n_latents"]
    n_active: Tensor
    """``[n_latents]`` tokens on which the latent fired (β is undefined, NaN, when 0)."""

    def tensors(self) -> dict[str, Tensor]:
        return {
            "own_model": self.own_model,
            "beta_error": self.beta_error,
            "beta_reconstruction": self.beta_reconstruction,
            "ratio_error": self.ratio_error,
            "ratio_reconstruction": self.ratio_reconstruction,
            "n_active": self.n_active,
        }

    @classmethod
    def from_tensors(cls, t: dict[str, Tensor]) -> LatentScaling:
        return cls(**{k: t[k] for k in cls.__dataclass_fields__})

    def to_json(self, latents: Iterable[int] | None = None) -> dict[str, Any]:
        """Per-latent values (for ``latents``, default all) as lists."""
        idx = list(range(self.own_model.numel())) if latents is None else list(latents)
        return {
            str(i): {
                "own_model": MODEL_NAMES[int(self.own_model[i])],
                "beta_error": self.beta_error[i].tolist(),
                "beta_reconstruction": self.beta_reconstruction[i].tolist(),
                "ratio_error": _num(self.ratio_error[i]),
                "ratio_reconstruction": _num(self.ratio_reconstruction[i]),
                "n_active": int(self.n_active[i]),
            }
            for i in idx
        }


def _num(x: Tensor) -> float | None:
    v = float(x)
    return None if v != v else v


@torch.no_grad()
def latent_scaling(
    crosscoder: Crosscoder,
    batches: Iterable[Tensor],
    *,
    own_model: Tensor | None = None,
    max_batches: int | None = None,
) -> LatentScaling:
    """Closed-form least-squares β per latent over paired raw batches.

    ``own_model`` (``[n_latents]`` of 0/1) picks the direction; by default the model with
    the larger decoder norm. Sites are concatenated per model.
    """
    cc = crosscoder
    n_lat = cc.n_latents
    w_dec = cc.W_dec_LSMD.detach()
    scale = cc.input_scale_SM
    dirs = w_dec / scale[None, :, :, None]  # raw units [L, S, 2, D]
    dirs = einops.rearrange(dirs, "l s m d -> l m (s d)")
    if own_model is None:
        norms = dirs.norm(dim=-1)
        own_model = (norms[:, 1] >= norms[:, 0]).long()
    own = own_model.long()
    d_own = dirs[torch.arange(n_lat), own]  # [L, X]
    d_sq = d_own.pow(2).sum(-1)
    cross = einops.einsum(d_own, dirs, "l x, l m x -> l m")  # <d, d_j^m>
    sum_f2 = torch.zeros(n_lat, dtype=torch.float64)
    num_err = torch.zeros(n_lat, 2, dtype=torch.float64)
    num_rec = torch.zeros(n_lat, 2, dtype=torch.float64)
    n_active = torch.zeros(n_lat, dtype=torch.long)
    b_dec = einops.rearrange(cc.b_dec_SMD / scale[:, :, None], "s m d -> m (s d)")
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        x = cc.as_sites(batch.to(w_dec.device)).float()
        f = cc.encode(x)
        recon = cc.decode(f)
        x_m = einops.rearrange(x, "b s m d -> b m (s d)")
        r_m = einops.rearrange(recon, "b s m d -> b m (s d)")
        err = x_m - r_m
        rec = r_m - b_dec[None]
        f2 = f.pow(2)
        sum_f2 += f2.sum(0).double()
        n_active += (f > 0).sum(0)
        for m in range(2):
            proj_err = einops.einsum(f, err[:, m], "b l, b x -> l x")
            proj_rec = einops.einsum(f, rec[:, m], "b l, b x -> l x")
            own_term = f2.sum(0) * cross[:, m]
            num_err[:, m] += ((proj_err * d_own).sum(-1) + own_term).double()
            num_rec[:, m] += (proj_rec * d_own).sum(-1).double()
    denom = (d_sq.double() * sum_f2).unsqueeze(-1)
    valid = denom > 0
    beta_err = torch.where(valid, num_err / denom.clamp_min(1e-30), torch.nan).float()
    beta_rec = torch.where(valid, num_rec / denom.clamp_min(1e-30), torch.nan).float()
    rows = torch.arange(n_lat)
    other = 1 - own

    def ratio(beta: Tensor) -> Tensor:
        return beta[rows, other] / beta[rows, own]

    return LatentScaling(
        own_model=own,
        beta_error=beta_err,
        beta_reconstruction=beta_rec,
        ratio_error=ratio(beta_err),
        ratio_reconstruction=ratio(beta_rec),
        n_active=n_active,
    )
