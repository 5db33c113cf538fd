"""Reading directions and logits: the logit lens, top tokens and per-token KL.

One logit-lens computation serves every reader of a direction: the ADL, crosscoder and
diff-SAE latents in the report, the vocabulary enrichment, and the agent's
``latent_details`` tool. A direction's logit effect is ``unembed(norm(v)) - unembed(norm(0))``
through one side's own final norm and unembedding.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from auditlens.models import ModelSide
from auditlens.sites import final_norm

__all__ = ["logit_effects", "logit_lens", "token_kl", "top_tokens"]

TokenList = list[tuple[str, float]]


@torch.no_grad()
def logit_lens(side: ModelSide, vectors: Float[Tensor, "n d_model"]) -> Float[Tensor, "n vocab"]:
    """``unembed(norm(v)) - unembed(norm(0))`` per row, with the side's own norm and head.

    Subtracting the zero vector's logits removes norm/head biases, so only the direction's
    own effect is ranked (RMSNorm is scale-invariant; LayerNorm would otherwise add its bias).
    """
    with side.active():
        hf = side.hf
        norm, head = final_norm(hf), hf.get_output_embeddings()
        p = next(head.parameters())
        v = vectors.to(p.device, p.dtype)
        both = torch.cat([v, torch.zeros_like(v[:1])]).unsqueeze(0)
        logits = head(norm(both)).squeeze(0).float()
    return (logits[:-1] - logits[-1:]).cpu()


def top_tokens(
    logits: Float[Tensor, " vocab"], tokenizer: Any, k: int = 10
) -> tuple[TokenList, TokenList]:
    """(promoted, suppressed): the ``k`` highest and lowest logits with their token text."""
    k = min(k, logits.numel())
    hi = torch.topk(logits, k)
    lo = torch.topk(-logits, k)

    def name(i: int) -> str:
        return str(tokenizer.decode([i])) if tokenizer is not None else str(i)

    promoted = [(name(int(i)), float(v)) for v, i in zip(hi.values, hi.indices, strict=True)]
    suppressed = [(name(int(i)), -float(v)) for v, i in zip(lo.values, lo.indices, strict=True)]
    return promoted, suppressed


def logit_effects(
    side: ModelSide, tokenizer: Any, vectors: Float[Tensor, "n d_model"], k: int = 10
) -> list[tuple[TokenList, TokenList]]:
    """(promoted, suppressed) tokens of each direction through ``side``'s logit lens."""
    logits = logit_lens(side, vectors)
    return [top_tokens(row, tokenizer, k) for row in logits]


def token_kl(
    ft_logits: Float[Tensor, "... vocab"], base_logits: Float[Tensor, "... vocab"]
) -> Float[Tensor, "..."]:
    """KL(p_ft || p_base) per position, in nats."""
    lp_ft = torch.log_softmax(ft_logits.float(), dim=-1)
    lp_base = torch.log_softmax(base_logits.float(), dim=-1)
    return (lp_ft.exp() * (lp_ft - lp_base)).sum(-1).clamp_min(0.0)
