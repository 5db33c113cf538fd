"""Per-token KL(ft || base) of the next-token distributions, with the top divergent tokens."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from auditlens.diffing._topk import RunningTopK
from auditlens.lens import token_kl

__all__ = ["KLAccumulator", "KLSummary", "TopKLToken"]


@dataclass(frozen=True)
class TopKLToken:
    """A high-divergence position, the context that precedes it and each model's favourites."""

    prompt_index: int
    position: int
    kl: float
    context: str
    base_top: list[tuple[str, float]]
    ft_top: list[tuple[str, float]]


@dataclass
class KLSummary:
    """Summary statistics of per-token KL(ft||base) over a prompt set."""

    n_tokens: int
    mean: float
    median: float
    p90: float
    p99: float
    max: float
    top_tokens: list[TopKLToken] = field(default_factory=list)
    rows: list[list[tuple[str, float]]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class KLAccumulator:
    """Streams paired logits and keeps KL values, the top positions and a few heat rows."""

    def __init__(self, tokenizer: Any, top_k: int = 20, n_top_preds: int = 5, n_rows: int = 6):
        self.tokenizer = tokenizer
        self.top = RunningTopK(top_k)
        self.n_top_preds = n_top_preds
        self.n_rows = n_rows
        self.rows: list[list[tuple[str, float]]] = []
        self._values: list[Tensor] = []

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids))

    def _preds(self, logits: Tensor) -> list[tuple[str, float]]:
        probs = torch.softmax(logits.float(), dim=-1)
        p, idx = probs.topk(self.n_top_preds)
        return [
            (self._decode([i]), float(v)) for v, i in zip(p.tolist(), idx.tolist(), strict=True)
        ]

    def update(
        self,
        input_ids: Int[Tensor, "batch seq"],
        token_mask: Bool[Tensor, "batch seq"],
        prompt_index: Int[Tensor, " batch"],
        base_logits: Float[Tensor, "batch seq vocab"],
        ft_logits: Float[Tensor, "batch seq vocab"],
        context_tokens: int = 24,
    ) -> None:
        """Add one batch; only positions in ``token_mask`` count."""
        kl = token_kl(ft_logits, base_logits).cpu()
        mask = token_mask.cpu()
        self._values.append(kl[mask])
        for row in range(kl.shape[0]):
            valid = mask[row].nonzero().flatten().tolist()
            if len(self.rows) < self.n_rows and valid:
                ids = input_ids[row].tolist()
                self.rows.append([(self._decode([ids[i]]), float(kl[row, i])) for i in valid])
            for pos in valid:
                value = float(kl[row, pos])
                if value > self.top.threshold():
                    lo = max(0, pos + 1 - context_tokens)
                    ctx = self._decode(input_ids[row, lo : pos + 1].tolist())
                    item = TopKLToken(
                        int(prompt_index[row]),
                        pos,
                        value,
                        ctx,
                        self._preds(base_logits[row, pos]),
                        self._preds(ft_logits[row, pos]),
                    )
                    self.top.push(value, item)

    def values(self) -> Tensor:
        return torch.cat(self._values) if self._values else torch.empty(0)

    def result(self) -> KLSummary:
        v = self.values()
        if v.numel() == 0:
            return KLSummary(0, 0.0, 0.0, 0.0, 0.0, 0.0)
        q = torch.quantile(v, torch.tensor([0.5, 0.9, 0.99]))
        return KLSummary(
            n_tokens=int(v.numel()),
            mean=float(v.mean()),
            median=float(q[0]),
            p90=float(q[1]),
            p99=float(q[2]),
            max=float(v.max()),
            top_tokens=[t for _, t in self.top.items()],
            rows=self.rows,
        )
