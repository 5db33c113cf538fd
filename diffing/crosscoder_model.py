"""Crosscoders: one sparse dictionary that reads and reconstructs both models at once.

A latent has one encoder row and one decoder vector per (site, model); the relative size of
its base and fine-tuned decoder vectors says whether it is shared or model-specific.

Two variants:

- ``l1``: ``f = relu(W_enc x + b_enc)``; loss ``sum_m ||x_m - x̂_m||² + λ Σ_i f_i Σ_m ||d_i^m||``
  (the L1 penalty weighted by the summed decoder norms, as in Anthropic's crosscoders).
- ``batchtopk``: keep the ``k·batch`` largest ``f_i · Σ_m ||d_i^m||`` over the whole batch (``k``
  latents per token on average), plus an AuxK loss in which dead latents reconstruct the
  residual. Only the encoder's forward matmul is dense; see :mod:`auditlens.diffing._sparse`.
  At inference a latent fires when its score passes a threshold learned during training, so
  encodings do not depend on the batch.

Activations are scaled (by default one scale per site, shared by both models) so that
``E||x||² = d_model``; weights live in that normalised space and
:meth:`Crosscoder.decoder_directions` converts back to raw units.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import einops
import torch
from jaxtyping import Float
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from auditlens.diffing._sparse import (
    batch_topk_select,
    selected_values,
    sparse_decode,
    sparse_encode,
)
from auditlens.errors import AuditlensError
from auditlens.hashing import sha256_file

__all__ = [
    "MODEL_NAMES",
    "CheckpointError",
    "Crosscoder",
    "CrosscoderConfig",
    "CrosscoderLoss",
]

MODEL_NAMES = ("base", "finetuned")
Variant = Literal["batchtopk", "l1"]
_WEIGHTS = "crosscoder.safetensors"
_CONFIG = "crosscoder.json"


class CheckpointError(AuditlensError):
    """A missing, corrupt or mismatched crosscoder / checkpoint file."""


@dataclass(frozen=True)
class CrosscoderConfig:
    """Architecture of a crosscoder over ``n_sites`` sites of two models."""

    d_model: int
    """Width of each model's activation at each site."""
    n_latents: int
    """Dictionary size (number of latents)."""
    n_sites: int = 1
    """Number of sites read together (each latent has one decoder vector per site and model)."""
    variant: Variant = "batchtopk"
    """``batchtopk`` (k latents per token on average) or ``l1`` (decoder-norm-weighted L1)."""
    k: float = 32.0
    """BatchTopK: mean number of active latents per token."""
    l1_coefficient: float = 1.0
    """L1: weight λ of ``Σ_i f_i Σ_m ||d_i^m||`` (on normalised activations)."""
    aux_k: int | None = None
    """AuxK: dead latents used per token to model the residual (``None``: half the input width)."""
    aux_coefficient: float = 1.0 / 32
    """AuxK: weight of the auxiliary loss."""
    dead_after_tokens: int = 1_000_000
    """A latent that has not fired for this many training tokens counts as dead."""
    threshold_lr: float = 0.01
    """BatchTopK: EMA rate of the inference threshold (tracks the batch's selection cutoff)."""
    decoder_init_norm: float = 0.01
    """Initial norm of each decoder vector (per site and model). Kept small because nothing
    shrinks an unused decoder vector under BatchTopK: the base decoder of a fine-tuned-only
    latent stays near this norm, which is the floor its relative norm is read against."""
    sites: tuple[str, ...] = ()
    """Site names, for provenance (length ``n_sites`` when given)."""

    def __post_init__(self) -> None:
        if self.d_model < 1 or self.n_latents < 1 or self.n_sites < 1:
            raise AuditlensError("crosscoder needs d_model, n_latents and n_sites >= 1")
        if self.variant not in ("batchtopk", "l1"):
            raise AuditlensError(
                f"unknown crosscoder variant {self.variant!r}; use batchtopk or l1"
            )
        if self.variant == "batchtopk" and not 0 < self.k <= self.n_latents:
            raise AuditlensError(f"k must be in (0, n_latents={self.n_latents}], got {self.k}")
        if self.l1_coefficient < 0 or self.aux_coefficient < 0:
            raise AuditlensError("l1_coefficient and aux_coefficient must be >= 0")
        if self.aux_k is not None and self.aux_k < 1:
            raise AuditlensError(f"aux_k must be >= 1, got {self.aux_k}")
        if self.dead_after_tokens < 1:
            raise AuditlensError("dead_after_tokens must be >= 1")
        if not 0 < self.threshold_lr <= 1:
            raise AuditlensError("threshold_lr must be in (0, 1]")
        if self.decoder_init_norm <= 0:
            raise AuditlensError("decoder_init_norm must be > 0")
        if self.sites and len(self.sites) != self.n_sites:
            raise AuditlensError(f"{len(self.sites)} site names for n_sites={self.n_sites}")

    @property
    def d_in(self) -> int:
        """Width of the flattened input, ``n_sites · 2 · d_model``."""
        return self.n_sites * 2 * self.d_model

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["sites"] = list(self.sites)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CrosscoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"unknown crosscoder config fields: {', '.join(unknown)}")
        kwargs = dict(data)
        kwargs["sites"] = tuple(kwargs.get("sites", ()))
        return cls(**kwargs)


@dataclass
class CrosscoderLoss:
    """One training forward pass: the loss to minimise, its parts and what fired."""

    loss: Tensor
    mse: Tensor
    sparsity: Tensor
    aux: Tensor
    recon: Float[Tensor, "batch d_in"]
    fired: Tensor
    l0: float
    threshold: float | None


class Crosscoder(nn.Module):
    """A crosscoder; weights are latent-major ``[n_latents, n_sites, 2, d_model]``."""

    def __init__(self, config: CrosscoderConfig, *, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        c = config
        gen = torch.Generator().manual_seed(seed)
        w = torch.randn(c.n_latents, c.n_sites, 2, c.d_model, generator=gen)
        w = w / w.norm(dim=-1, keepdim=True) * c.decoder_init_norm
        self.W_dec_LSMD = nn.Parameter(w.clone())
        self.W_enc_LSMD = nn.Parameter(w.clone())
        self.b_enc_L = nn.Parameter(torch.zeros(c.n_latents))
        self.b_dec_SMD = nn.Parameter(torch.zeros(c.n_sites, 2, c.d_model))
        self.register_buffer("input_scale_SM", torch.ones(c.n_sites, 2))
        self.register_buffer("threshold", torch.zeros((), dtype=torch.float64))
        self._workspace: dict[str, Tensor] = {}

    input_scale_SM: Tensor
    threshold: Tensor

    # ---- shapes -------------------------------------------------------------------------
    @property
    def n_latents(self) -> int:
        return self.config.n_latents

    @property
    def sites(self) -> list[str]:
        return list(self.config.sites)

    def as_sites(self, x: Tensor) -> Float[Tensor, "batch n_sites 2 d_model"]:
        """Accept ``[b, 2, d]`` (one site) or ``[b, n_sites, 2, d]``; check the shape."""
        c = self.config
        if x.dim() == 3 and c.n_sites == 1:
            x = x.unsqueeze(1)
        if x.dim() != 4 or tuple(x.shape[1:]) != (c.n_sites, 2, c.d_model):
            want = f"[batch, {c.n_sites}, 2, {c.d_model}]" + (
                f" or [batch, 2, {c.d_model}]" if c.n_sites == 1 else ""
            )
            raise AuditlensError(f"crosscoder input has shape {list(x.shape)}; expected {want}")
        return x

    def flatten_input(self, x: Tensor) -> Float[Tensor, "batch d_in"]:
        """Raw activations -> the normalised, flattened input the weights act on."""
        x = self.as_sites(x).to(self.W_enc_LSMD.dtype)
        x = x * self.input_scale_SM[None, :, :, None]
        return einops.rearrange(x, "b s m d -> b (s m d)")

    def unflatten(self, y: Tensor) -> Float[Tensor, "batch n_sites 2 d_model"]:
        """A flattened normalised reconstruction -> raw units ``[b, n_sites, 2, d]``."""
        c = self.config
        y = einops.rearrange(y, "b (s m d) -> b s m d", s=c.n_sites, m=2, d=c.d_model)
        return y / self.input_scale_SM[None, :, :, None]

    def _scratch(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """A reusable training buffer (not saved): large fresh allocations cost page faults
        on every step."""
        buf = self._workspace.get(name)
        if (
            buf is None
            or buf.shape != shape
            or buf.dtype != dtype
            or buf.device != self.b_enc_L.device
        ):
            buf = torch.empty(shape, dtype=dtype, device=self.b_enc_L.device)
            self._workspace[name] = buf
        return buf

    def _w_enc(self) -> Tensor:
        return self.W_enc_LSMD.view(self.n_latents, -1)

    def _w_dec(self) -> Tensor:
        return self.W_dec_LSMD.view(self.n_latents, -1)

    def decoder_norms(self) -> Float[Tensor, "n_latents n_sites 2"]:
        """``||d_i^{s,m}||`` of every latent's decoder vector per site and model."""
        return self.W_dec_LSMD.norm(dim=-1)

    def selection_weight(self) -> Float[Tensor, " n_latents"]:
        """``Σ_{s,m} ||d_i^{s,m}||``: weights latent scores (L1 penalty, BatchTopK ranking)."""
        return self.decoder_norms().sum(dim=(1, 2))

    # ---- inference ----------------------------------------------------------------------
    def pre_activations(self, x: Tensor) -> Float[Tensor, "batch n_latents"]:
        """``W_enc x + b_enc`` on raw activations."""
        return torch.addmm(self.b_enc_L, self.flatten_input(x), self._w_enc().t())

    @torch.no_grad()
    def encode(
        self, x: Float[Tensor, "batch ..."], *, batch_topk: bool = False
    ) -> Float[Tensor, "batch n_latents"]:
        """Latent activations of raw activations ``[b, 2, d]`` / ``[b, n_sites, 2, d]``.

        BatchTopK crosscoders use the learned threshold (batch-independent); pass
        ``batch_topk=True`` (or use an untrained model) to select over the batch instead.
        """
        pre = self.pre_activations(x)
        acts = pre.clamp_min(0)
        if self.config.variant == "l1":
            return acts
        weight = self.selection_weight()
        thr = float(self.threshold)
        if batch_topk or thr <= 0:
            n = round(self.config.k * pre.shape[0])
            sel, _ = batch_topk_select(pre, weight, n)
            out = torch.zeros_like(acts)
            out[sel.rows, sel.cols] = acts[sel.rows, sel.cols]
            return out
        return acts * (acts * weight > thr)

    def decode(
        self, acts: Float[Tensor, "batch n_latents"]
    ) -> Float[Tensor, "batch n_sites 2 d_model"]:
        """Reconstruction of both models' raw activations from latent activations."""
        flat = torch.addmm(
            self.b_dec_SMD.reshape(-1), acts.to(self.W_dec_LSMD.dtype), self._w_dec()
        )
        return self.unflatten(flat)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Float[Tensor, "batch n_sites 2 d_model"]:
        """Encode then decode (raw units)."""
        return self.decode(self.encode(x))

    @torch.no_grad()
    def decoder_directions(
        self, site: int | str = -1
    ) -> dict[str, Float[Tensor, "n_latents d_model"]]:
        """Each model's decoder vectors at one site, in raw activation units."""
        s = self.site_index(site)
        w = self.W_dec_LSMD[:, s] / self.input_scale_SM[s][None, :, None]
        return {name: w[:, m].clone() for m, name in enumerate(MODEL_NAMES)}

    @torch.no_grad()
    def model_contributions(self, x: Tensor) -> dict[str, Float[Tensor, "batch n_latents"]]:
        """Each model's additive share of the pre-activation (``pre = base + ft + b_enc``)."""
        xs = self.as_sites(x).to(self.W_enc_LSMD.dtype) * self.input_scale_SM[None, :, :, None]
        return {
            name: einops.einsum(xs[:, :, m], self.W_enc_LSMD[:, :, m], "b s d, l s d -> b l")
            for m, name in enumerate(MODEL_NAMES)
        }

    def site_index(self, site: int | str) -> int:
        """Index of a site given by position or name."""
        if isinstance(site, str):
            if site not in self.config.sites:
                raise AuditlensError(f"site {site!r} is not one of this crosscoder's {self.sites}")
            return self.config.sites.index(site)
        n = self.config.n_sites
        if not -n <= site < n:
            raise AuditlensError(f"site index {site} out of range for {n} sites")
        return site % n

    # ---- training -----------------------------------------------------------------------
    def training_loss(
        self,
        x_flat: Float[Tensor, "batch d_in"],
        *,
        dead: Tensor | None = None,
        l1_coefficient: float | None = None,
        threshold_guess: float | None = None,
    ) -> CrosscoderLoss:
        """Loss on a normalised flattened batch (see :meth:`flatten_input`)."""
        if self.config.variant == "l1":
            return self._l1_loss(x_flat, l1_coefficient)
        return self._batchtopk_loss(x_flat, dead, threshold_guess)

    def _l1_loss(self, x: Tensor, coefficient: float | None) -> CrosscoderLoss:
        lam = self.config.l1_coefficient if coefficient is None else coefficient
        f = torch.relu(torch.addmm(self.b_enc_L, x, self._w_enc().t()))
        recon = torch.addmm(self.b_dec_SMD.reshape(-1), f, self._w_dec())
        mse = (recon - x).pow(2).sum(-1).mean()
        sparsity = (f * self.selection_weight()).sum(-1).mean()
        active = f > 0
        zero = mse.new_zeros(())
        return CrosscoderLoss(
            loss=mse + lam * sparsity,
            mse=mse.detach(),
            sparsity=sparsity.detach(),
            aux=zero,
            recon=recon.detach(),
            fired=active.any(0),
            l0=float(active.sum(-1).float().mean()),
            threshold=None,
        )

    def _batchtopk_loss(
        self, x: Tensor, dead: Tensor | None, guess: float | None
    ) -> CrosscoderLoss:
        b = x.shape[0]
        w_enc, w_dec = self._w_enc(), self._w_dec()
        shape = (b, self.n_latents)
        with torch.no_grad():
            # the bias is folded into the selection thresholds; buffers are reused across steps
            pre = torch.mm(x, w_enc.t(), out=self._scratch("pre", shape, x.dtype))
            weight = self.selection_weight()
            bias = self.b_enc_L.detach()
        n = round(self.config.k * b)
        mask = self._scratch("mask", shape, torch.bool)
        sel, thr = batch_topk_select(pre, weight, n, guess, bias=bias, mask_buffer=mask)
        values = selected_values(pre, sel, bias)
        del pre
        acts = sparse_encode(values, x, self.W_enc_LSMD, self.b_enc_L, sel)
        recon = sparse_decode(acts, w_dec, sel) + self.b_dec_SMD.reshape(-1)
        mse = (recon - x).pow(2).sum(-1).mean()
        aux = self._aux_loss(x, recon, dead)
        return CrosscoderLoss(
            loss=mse + self.config.aux_coefficient * aux,
            mse=mse.detach(),
            sparsity=mse.new_zeros(()),
            aux=aux.detach(),
            recon=recon.detach(),
            fired=sel.fired(),
            l0=sel.nnz / b,
            threshold=thr,
        )

    def _aux_loss(self, x: Tensor, recon: Tensor, dead: Tensor | None) -> Tensor:
        """AuxK: the top dead latents (per token) reconstruct the residual ``x - x̂``."""
        if dead is None or not bool(dead.any()):
            return recon.new_zeros(())
        idx = dead.nonzero().squeeze(1)
        k_aux = self.config.aux_k or self.config.d_in // 2
        scale = min(idx.numel() / k_aux, 1.0)
        k_aux = min(k_aux, idx.numel())
        residual = (x - recon).detach()
        pre_dead = torch.addmm(
            self.b_enc_L.index_select(0, idx), x, self._w_enc().index_select(0, idx).t()
        )
        top = pre_dead.topk(k_aux, dim=-1)
        acts = torch.zeros_like(pre_dead).scatter(-1, top.indices, top.values.clamp_min(0))
        aux_recon = acts @ self._w_dec().index_select(0, idx)
        return scale * (aux_recon - residual).pow(2).sum(-1).mean()

    @torch.no_grad()
    def update_threshold(self, threshold: float, step: int) -> None:
        """Move the inference threshold toward this batch's selection cutoff.

        A running mean over the first ``1 / threshold_lr`` steps, then an EMA with rate
        ``threshold_lr`` (sae-lens's BatchTopK uses the same EMA).
        """
        rate = max(self.config.threshold_lr, 1.0 / (step + 1))
        self.threshold.mul_(1 - rate).add_(rate * threshold)

    @torch.no_grad()
    def set_input_scale(self, batches: list[Tensor], mode: str = "shared") -> None:
        """Scale inputs so that ``E||scale·x||² = d_model``; centre ``b_dec`` on the data.

        ``shared``: one scale per site for both models, so decoder norms stay comparable
        across models; ``per_model``: one per (site, model), which biases relative decoder
        norms whenever the two models' activation scales differ; ``none``: scale 1.
        """
        if mode not in ("shared", "per_model", "none"):
            raise AuditlensError(f"unknown normalisation {mode!r}; use shared, per_model or none")
        xs = torch.cat([self.as_sites(b).to(self.W_enc_LSMD.dtype) for b in batches])
        mean_sq = xs.pow(2).sum(-1).mean(0)  # [S, 2]
        if mode == "shared":
            mean_sq = mean_sq.mean(1, keepdim=True).expand_as(mean_sq)
        scale = (self.config.d_model / mean_sq.clamp_min(1e-12)).sqrt()
        if mode == "none":
            scale = torch.ones_like(scale)
        self.input_scale_SM.copy_(scale)
        self.b_dec_SMD.copy_((xs * scale[None, :, :, None]).mean(0))

    # ---- persistence --------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write weights (safetensors) and config (JSON) atomically; return the folder."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        _atomic_save_tensors(tensors, out / _WEIGHTS)
        meta = {
            "format": 1,
            "config": self.config.to_json(),
            "sha256": sha256_file(out / _WEIGHTS),
        }
        _atomic_write_text(out / _CONFIG, json.dumps(meta, indent=1))
        return out

    @classmethod
    def load(cls, directory: str | Path, *, device: str | torch.device = "cpu") -> Crosscoder:
        """Load a crosscoder written by :meth:`save` (checksum verified)."""
        path = Path(directory)
        meta = _read_json(path / _CONFIG)
        try:
            config = CrosscoderConfig.from_json(meta["config"])
        except (KeyError, TypeError) as err:
            raise CheckpointError(f"{path / _CONFIG} is malformed: {err}") from err
        tensors = _load_tensors(path / _WEIGHTS, meta.get("sha256"))
        model = cls(config)
        try:
            model.load_state_dict(tensors)
        except RuntimeError as err:
            msg = str(err).splitlines()[0]
            raise CheckpointError(f"{path / _WEIGHTS} does not match its config: {msg}") from err
        return model.to(device)


# ---- small atomic-file helpers shared by the trainer ------------------------------------
def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _atomic_save_tensors(tensors: dict[str, Tensor], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp))
    _fsync(tmp)
    tmp.replace(path)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise CheckpointError(f"{path} is missing") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is corrupt (not valid JSON)") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is corrupt (expected a JSON object)")
    return data


def _load_tensors(path: Path, sha256: str | None) -> dict[str, Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    if sha256 is not None and sha256_file(path) != sha256:
        raise CheckpointError(f"{path} fails its checksum (corrupt or partially written)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path} is unreadable: {err}") from err
