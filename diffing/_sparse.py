"""Sparse kernels for BatchTopK dictionaries: exact batch top-k selection and sparse products.

With ``k`` active latents per token out of ``n_latents``, only the encoder's forward matmul is
dense. The decoder and both weight gradients touch just the selected (token, latent) pairs:

- decoder forward: ``embedding_bag`` over each token's selected decoder rows;
- d loss / d activation: a sampled dense-dense product (``torch.sparse.sampled_addmm``);
- weight gradients: ``embedding_bag`` over each latent's selecting tokens (grouped by latent).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

__all__ = [
    "Selection",
    "batch_topk_select",
    "make_selection",
    "selected_values",
    "sparse_decode",
    "sparse_encode",
]

_SAMPLE = 1 << 16


@dataclass
class Selection:
    """Selected (token, latent) pairs in token-major order, with the latent-major regrouping."""

    rows: Int[Tensor, " nnz"]
    cols: Int[Tensor, " nnz"]
    n_rows: int
    n_cols: int
    row_offsets: Int[Tensor, " n_rows"]
    by_latent: Int[Tensor, " nnz"]
    """Permutation that groups the pairs by latent (stable)."""
    rows_by_latent: Int[Tensor, " nnz"]
    latent_offsets: Int[Tensor, " n_cols"]
    col_counts: Int[Tensor, " n_cols"]
    flat_index: Int[Tensor, " nnz"] | None = None

    @property
    def nnz(self) -> int:
        return int(self.rows.numel())

    def fired(self) -> Tensor:
        """Which latents were selected at least once."""
        return self.col_counts > 0


def make_selection(rows: Tensor, cols: Tensor, n_rows: int, n_cols: int) -> Selection:
    """Index bookkeeping for a token-major sorted list of (row, col) pairs.

    On CPU this runs in numpy: these are small single-pass jobs (counts, offsets, a radix
    sort of 16-bit latent ids) that are faster single-threaded than through a thread pool
    that must synchronise per op. torch's parallel stable sort alone varied from 2 ms to
    300 ms per call on a loaded 2-core machine.
    """
    if rows.device.type == "cpu":
        r, c = rows.numpy(), cols.numpy()
        row_counts = np.bincount(r, minlength=n_rows)
        col_counts = np.bincount(c, minlength=n_cols)
        key = c.astype(np.uint16) if n_cols <= 1 << 16 else c
        order = np.argsort(key, kind="stable").astype(np.int64)
        return Selection(
            rows, cols, n_rows, n_cols,
            row_offsets=torch.from_numpy(np.cumsum(row_counts) - row_counts),
            by_latent=torch.from_numpy(order),
            rows_by_latent=torch.from_numpy(r[order]),
            latent_offsets=torch.from_numpy(np.cumsum(col_counts) - col_counts),
            col_counts=torch.from_numpy(col_counts),
        )  # fmt: skip
    row_counts_t = torch.bincount(rows, minlength=n_rows)
    col_counts_t = torch.bincount(cols, minlength=n_cols)
    order_t = torch.argsort(cols, stable=True)
    return Selection(
        rows, cols, n_rows, n_cols,
        row_offsets=torch.cumsum(row_counts_t, 0) - row_counts_t,
        by_latent=order_t,
        rows_by_latent=rows[order_t],
        latent_offsets=torch.cumsum(col_counts_t, 0) - col_counts_t,
        col_counts=col_counts_t,
    )  # fmt: skip


def _sample_threshold(scores_of: Any, total: int, n: int, device: torch.device) -> float:
    """A score threshold expected to keep a bit more than ``n`` of ``total`` entries."""
    gen = torch.Generator(device="cpu").manual_seed(total)
    idx = torch.randint(0, total, (min(_SAMPLE, total),), generator=gen).to(device)
    sample = scores_of(idx)
    q = max(0.0, 1.0 - 1.5 * n / total - 4.0 / sample.numel() ** 0.5)
    return float(torch.quantile(sample, q))


@torch.no_grad()
def batch_topk_select(
    pre: Float[Tensor, "batch n_latents"],
    weight: Float[Tensor, " n_latents"],
    n_select: int,
    guess: float | None = None,
    bias: Float[Tensor, " n_latents"] | None = None,
    mask_buffer: Tensor | None = None,
) -> tuple[Selection, float]:
    """The ``n_select`` largest scores ``relu(pre + bias) * weight`` over the whole batch.

    ``bias`` is folded into per-latent thresholds, so the caller can pass ``x @ W.T``
    without a separate pass adding it. ``guess`` (e.g. from last step's cutoff) lets one
    compare pass find a small candidate set; an exact top-k on the candidates then gives the
    cutoff (a bad guess costs a second pass, never a wrong answer). Returns the selection
    (token-major) and the cutoff score. Only positive scores are selected; exact ties at the
    cutoff are all kept.
    """
    b, n_lat = pre.shape
    total = b * n_lat
    flat = pre.reshape(-1)
    w = weight.clamp_min(1e-12)
    shift = torch.zeros_like(w) if bias is None else bias.to(w.dtype)
    n_select = min(n_select, total)

    def scores_of(idx: Tensor) -> Tensor:
        col = idx % n_lat
        vals = flat.index_select(0, idx).add_(shift.index_select(0, col))
        return vals.clamp_min_(0).mul_(w.index_select(0, col))

    idx = None
    thr = guess if guess is not None and guess > 0 else None
    for _ in range(2):
        if thr is None:
            thr = _sample_threshold(scores_of, total, n_select, pre.device)
        if thr <= 0:
            break
        limit = thr / w - shift
        mask = pre > limit if mask_buffer is None else torch.gt(pre, limit, out=mask_buffer)
        cand = mask.reshape(-1).nonzero().squeeze(1)
        if cand.numel() >= n_select:
            idx = cand
            break
        thr = None
    if idx is None:  # fall back to a full top-k (also when few scores are positive)
        scores = ((pre + shift).clamp_min(0) * w).reshape(-1)
        cut = torch.topk(scores, n_select, sorted=False).values.min()
        idx = (scores >= cut.clamp_min(torch.finfo(scores.dtype).tiny)).nonzero().squeeze(1)
        cutoff = float(cut)
    elif idx.device.type == "cpu":  # small single-pass work: numpy, single-threaded
        cand_np = idx.numpy()
        col = cand_np % n_lat
        scores_np = flat.detach().numpy()[cand_np] + shift.detach().numpy()[col]
        np.maximum(scores_np, 0, out=scores_np)
        scores_np *= w.detach().numpy()[col]
        m = scores_np.shape[0]
        cut_np = np.partition(scores_np, m - n_select)[m - n_select]
        idx = torch.from_numpy(cand_np[scores_np >= cut_np])
        cutoff = float(cut_np)
    else:
        scores = scores_of(idx)
        cut = torch.topk(scores, n_select, sorted=False).values.min()
        idx = idx[scores >= cut]
        cutoff = float(cut)
    if idx.device.type == "cpu":
        q, r = np.divmod(idx.numpy(), n_lat)
        rows, cols = torch.from_numpy(q), torch.from_numpy(r)
    else:
        rows, cols = idx // n_lat, idx % n_lat
    sel = make_selection(rows, cols, b, n_lat)
    sel.flat_index = idx
    return sel, cutoff


def selected_values(
    pre: Float[Tensor, "batch n_latents"], sel: Selection, bias: Tensor | None = None
) -> Float[Tensor, " nnz"]:
    """``pre (+ bias)`` at the selected pairs, in selection order."""
    if sel.flat_index is not None:
        vals = pre.reshape(-1).index_select(0, sel.flat_index)
    else:
        vals = pre[sel.rows, sel.cols]
    return vals if bias is None else vals + bias.index_select(0, sel.cols)


class _SparseEncode(torch.autograd.Function):
    """Pre-activations at selected pairs, whose gradient reaches only selected encoder rows."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, values: Tensor, x: Tensor, w_enc: Tensor, b_enc: Tensor, sel: Selection
    ) -> Tensor:
        ctx.save_for_backward(x)
        ctx.sel = sel
        ctx.w_shape = w_enc.shape
        return values.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        sel: Selection = ctx.sel
        g = grad.contiguous()
        grad_w = grad_b = None
        if ctx.needs_input_grad[2]:
            grad_w = F.embedding_bag(
                sel.rows_by_latent, x, sel.latent_offsets, mode="sum",
                per_sample_weights=g[sel.by_latent],
            ).view(ctx.w_shape)  # fmt: skip
        if ctx.needs_input_grad[3]:
            grad_b = torch.zeros(sel.n_cols, dtype=g.dtype, device=g.device).index_add_(
                0, sel.cols, g
            )
        return None, None, grad_w, grad_b, None


class _SparseDecode(torch.autograd.Function):
    """Sum of selected decoder rows weighted by activations, with sparse backward passes."""

    @staticmethod
    def forward(ctx: Any, acts: Tensor, w_dec: Tensor, sel: Selection) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(acts, w_dec)
        ctx.sel = sel
        out = F.embedding_bag(sel.cols, w_dec, sel.row_offsets, mode="sum", per_sample_weights=acts)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        acts, w_dec = ctx.saved_tensors
        sel: Selection = ctx.sel
        g = grad_out.contiguous()
        grad_acts = grad_w = None
        if ctx.needs_input_grad[0]:
            crow = torch.cat([sel.row_offsets, sel.row_offsets.new_tensor([sel.nnz])])
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                pattern = torch.sparse_csr_tensor(
                    crow, sel.cols, acts.detach(), size=(sel.n_rows, sel.n_cols),
                    check_invariants=False,
                )  # fmt: skip
            grad_acts = torch.sparse.sampled_addmm(pattern, g, w_dec.t(), beta=0.0).values()
        if ctx.needs_input_grad[1]:
            grad_w = F.embedding_bag(
                sel.rows_by_latent, g, sel.latent_offsets, mode="sum",
                per_sample_weights=acts.detach()[sel.by_latent],
            )  # fmt: skip
        return grad_acts, grad_w, None


def sparse_encode(
    values: Float[Tensor, " nnz"],
    x: Float[Tensor, "batch d_in"],
    w_enc: Float[Tensor, "n_latents d_in"],
    b_enc: Float[Tensor, " n_latents"],
    sel: Selection,
) -> Float[Tensor, " nnz"]:
    """Selected pre-activations ``values`` with gradients to ``w_enc`` and ``b_enc``.

    ``values`` must equal ``(x @ w_enc.T + b_enc)`` at the selected pairs (computed without
    autograd, see :func:`selected_values`); no gradient flows to ``x``.
    """
    out: Tensor = _SparseEncode.apply(values, x, w_enc.view(w_enc.shape[0], -1), b_enc, sel)
    return out


def sparse_decode(
    acts: Float[Tensor, " nnz"], w_dec: Float[Tensor, "n_latents d_out"], sel: Selection
) -> Float[Tensor, "batch d_out"]:
    """``sum_j acts[b, j] * w_dec[j]`` over each token's selected latents."""
    out: Tensor = _SparseDecode.apply(acts, w_dec, sel)
    return out
