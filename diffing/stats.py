"""Activation-difference statistics per site: ||h_ft - h_base||, relative norm, cosine.

Statistics stream over batches (from a live model pair or an activation store) with memory
bounded by the number of tokens, and keep the most-changed positions with their context.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from safetensors.torch import save_file
from torch import Tensor

from auditlens.diffing._topk import RunningTopK

__all__ = ["DiffStatsAccumulator", "SiteDiffStats", "TopToken", "diff_norms"]


def diff_norms(
    acts: Float[Tensor, "n 2 d_model"],
) -> tuple[Float[Tensor, " n"], Float[Tensor, " n"], Float[Tensor, " n"]]:
    """Per-token ||h_ft - h_base||, that over ||h_base||, and cos(h_base, h_ft)."""
    a = acts.float()
    base, ft = a[:, 0], a[:, 1]
    diff = (ft - base).norm(dim=-1)
    base_norm = base.norm(dim=-1)
    rel = diff / base_norm.clamp_min(1e-6)
    cos = torch.nn.functional.cosine_similarity(base, ft, dim=-1, eps=1e-6)
    return diff, rel, cos


@dataclass(frozen=True)
class TopToken:
    """A changed position: where it is, its value and its context text."""

    prompt_index: int
    position: int
    value: float
    token: str
    context: str


@dataclass
class SiteDiffStats:
    """Summary of the per-token activation differences at one site."""

    site: str
    n_tokens: int
    mean_diff_norm: float
    mean_rel_diff_norm: float
    mean_cosine: float
    mean_base_norm: float
    quantiles: dict[str, float]
    histogram: dict[str, list[float]]
    top_tokens: list[TopToken] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


ContextFn = Callable[[int, int], tuple[str, str]]


class DiffStatsAccumulator:
    """Streams paired activations for several sites and summarises them."""

    def __init__(self, sites: Sequence[str], top_k: int = 20, bins: int = 40) -> None:
        self.sites = list(sites)
        self.top_k = top_k
        self.bins = bins
        self._diff: dict[str, list[Tensor]] = {s: [] for s in self.sites}
        self._rel: dict[str, list[Tensor]] = {s: [] for s in self.sites}
        self._cos: dict[str, list[Tensor]] = {s: [] for s in self.sites}
        self._base: dict[str, list[Tensor]] = {s: [] for s in self.sites}
        self._top = {s: RunningTopK(top_k) for s in self.sites}

    def update(
        self,
        site: str,
        acts: Float[Tensor, "n 2 d_model"],
        prompt_index: Int[Tensor, " n"],
        positions: Int[Tensor, " n"],
        context: ContextFn | None = None,
    ) -> None:
        """Add a batch of paired activations (already masked to the tokens that count)."""
        diff, rel, cos = diff_norms(acts)
        self._diff[site].append(diff.cpu())
        self._rel[site].append(rel.cpu())
        self._cos[site].append(cos.cpu())
        self._base[site].append(acts[:, 0].float().norm(dim=-1).cpu())
        top = self._top[site]
        k = min(self.top_k, diff.numel())
        values, idx = diff.topk(min(diff.numel(), 4 * k))  # spare rows for duplicates
        for v, i in zip(values.tolist(), idx.tolist(), strict=True):
            if v > top.threshold():
                p, pos = int(prompt_index[i]), int(positions[i])
                token, ctx = context(p, pos) if context else ("", "")
                top.push(v, TopToken(p, pos, v, token, ctx), key=(token, ctx) if ctx else None)

    def per_token(self, site: str) -> dict[str, Tensor]:
        """All per-token values collected so far for one site."""
        return {
            "diff_norm": torch.cat(self._diff[site]),
            "rel_diff_norm": torch.cat(self._rel[site]),
            "cosine": torch.cat(self._cos[site]),
        }

    def result(self) -> list[SiteDiffStats]:
        out = []
        for site in self.sites:
            if not self._diff[site]:
                continue
            vals = self.per_token(site)
            diff = vals["diff_norm"]
            qs = torch.quantile(diff, torch.tensor([0.5, 0.9, 0.99]))
            hi = float(diff.max()) if diff.numel() else 0.0
            counts = torch.histc(diff, bins=self.bins, min=0.0, max=max(hi, 1e-9))
            edges = torch.linspace(0.0, max(hi, 1e-9), self.bins + 1)
            out.append(
                SiteDiffStats(
                    site=site,
                    n_tokens=int(diff.numel()),
                    mean_diff_norm=float(diff.mean()),
                    mean_rel_diff_norm=float(vals["rel_diff_norm"].mean()),
                    mean_cosine=float(vals["cosine"].mean()),
                    mean_base_norm=float(torch.cat(self._base[site]).mean()),
                    quantiles={"p50": float(qs[0]), "p90": float(qs[1]), "p99": float(qs[2])},
                    histogram={"edges": edges.tolist(), "counts": counts.tolist()},
                    top_tokens=[t for _, t in self._top[site].items()],
                )
            )
        return out

    def save(self, out_dir: str | Path) -> Path:
        """Write per-token values (safetensors) and the summary (JSON); return the JSON path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for site in self.sites:
            if self._diff[site]:
                for key, value in self.per_token(site).items():
                    tensors[f"{site}/{key}"] = value.contiguous()
        save_file(tensors, str(out / "diff_stats.safetensors"))
        path = out / "diff_stats.json"
        path.write_text(json.dumps([s.to_json() for s in self.result()], indent=1))
        return path
