"""Teacher-forced scoring: each side's next-token distribution over a given answer's tokens.

Three methods score fixed answers instead of generating them: the trigger scan (KL between
the sides at each answer token), the divergent words (the log-probability ratio of each
answer token) and the likelihood contrast (mean log-probability of a completion). They share
one forward pass shape: a chat-formatted prompt followed by the answer, right-padded into
batches, read only at the positions that predict answer tokens.

Only those positions go through the unembedding (``logits_to_keep``, where the model takes
it): the prompt (system prompt, chat template and question) is usually longer than the
scored answer, and at a vocabulary of 49,152 the unembedding is about a fifth of a small
model's forward pass. The positions kept are the same for every row of a batch (from the
batch's earliest answer start), so the result per row is what the full logits give at the
same positions; ``benchmarks/teacher_forcing.py`` measures both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from auditlens.decode import MIN_SHARED_PREFIX, common_prefix, takes_argument
from auditlens.kv_cache import cache_select, can_select_rows, make_cache
from auditlens.models import ModelSide

__all__ = [
    "Row",
    "answer_logprobs",
    "answer_token_logprobs",
    "chat_head",
    "chat_row",
    "pad_rows",
    "shared_prefix_length",
]

Row = tuple[list[int], int]
"""One sequence to score: its token ids and the index of its first answer token (>= 1)."""


def chat_head(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of ``prompt`` as a user turn in the chat template, up to the assistant's turn."""
    head = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    return list(tokenizer(str(head), add_special_tokens=False)["input_ids"])


def chat_row(tokenizer: Any, prompt: str, answer: str, max_answer: int | None = None) -> Row:
    """``prompt`` in the chat template followed by (the first ``max_answer`` tokens of)
    ``answer``, and where the answer starts."""
    head = chat_head(tokenizer, prompt)
    tail = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
    return head + (tail if max_answer is None else tail[:max_answer]), len(head)


def pad_rows(rows: Sequence[Row], pad: int) -> tuple[Int[Tensor, "n seq"], Int[Tensor, "n seq"]]:
    """Right-padded ``(input_ids, attention_mask)`` of ``rows``."""
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for r, (seq, _) in enumerate(rows):
        ids[r, : len(seq)] = torch.tensor(seq)
        attn[r, : len(seq)] = 1
    return ids, attn


def shared_prefix_length(rows: Sequence[Row]) -> int:
    """How many leading tokens all ``rows`` share before their first scored position (0 for
    one row, or fewer than :data:`~auditlens.decode.MIN_SHARED_PREFIX`: not worth a cache)."""
    if len(rows) < 2:
        return 0
    n = min(common_prefix([ids for ids, _ in rows]), min(start for _, start in rows) - 1)
    return n if n >= MIN_SHARED_PREFIX else 0


def _prefix_cache(model: Any, rows: Sequence[Row], width: int) -> tuple[int, Any]:
    """The shared prefix's length and an empty KV cache for the batch (0 where the model
    takes no cache or its cache's rows cannot be copied)."""
    n = shared_prefix_length(rows)
    if not n or not takes_argument(model, "past_key_values"):
        return 0, None
    cache = make_cache(model, width)
    return (n, cache) if can_select_rows(cache) else (0, None)


@torch.no_grad()
def _answer_logits(
    side: ModelSide, rows: Sequence[Row], pad: int, share_prefix: bool = True
) -> list[Tensor]:
    """Per row, fp32 logits ``[answer, vocab]`` at the positions predicting its answer tokens.

    With ``share_prefix``, the tokens every row starts with (the system prompt and chat
    template, often a trigger prefix too) go through the model once and their KV cache is
    copied to every row."""
    model = side.hf
    device = next(model.parameters()).device
    ids, attn = (t.to(device) for t in pad_rows(rows, pad))
    width = ids.shape[1]
    n, cache = _prefix_cache(model, rows, width) if share_prefix else (0, None)
    first = max(min(start for _, start in rows) - 1, 0)
    kwargs: dict[str, Any] = {}
    keep = takes_argument(model, "logits_to_keep")
    if keep:
        kwargs["logits_to_keep"] = torch.arange(first - n, width - 1 - n, device=device)
    else:
        first = n
    with side.active():
        if n:
            head = torch.arange(n, device=device)[None]
            model(input_ids=ids[:1, :n], attention_mask=attn[:1, :n], position_ids=head,
                  past_key_values=cache, use_cache=True,
                  **({"logits_to_keep": 1} if keep else {}))  # fmt: skip
            cache_select(cache, torch.zeros(len(rows), dtype=torch.long, device=device))
            kwargs |= {"past_key_values": cache, "use_cache": True}
            kwargs["position_ids"] = torch.arange(n, width, device=device)[None].expand(
                len(rows), -1
            )
        logits = model(input_ids=ids[:, n:], attention_mask=attn, **kwargs).logits
    return [
        logits[r, start - 1 - first : len(seq) - 1 - first].float()
        for r, (seq, start) in enumerate(rows)
    ]


def _scored(
    side: ModelSide, rows: Sequence[Row], pad: int, batch_size: int, share_prefix: bool
) -> Iterator[tuple[Row, Tensor]]:
    """Each row with its log-probabilities ``[answer, vocab]``, batch by batch."""
    for lo in range(0, len(rows), batch_size):
        chunk = rows[lo : lo + batch_size]
        for row, logits in zip(chunk, _answer_logits(side, chunk, pad, share_prefix), strict=True):
            yield row, torch.log_softmax(logits, -1)


def answer_logprobs(
    side: ModelSide,
    rows: Sequence[Row],
    *,
    pad: int,
    batch_size: int = 8,
    share_prefix: bool = True,
) -> list[Float[Tensor, "answer vocab"]]:
    """Per row, ``side``'s next-token log-probabilities at each answer token (on the CPU)."""
    return [logp.cpu() for _, logp in _scored(side, rows, pad, batch_size, share_prefix)]


def answer_token_logprobs(
    side: ModelSide,
    rows: Sequence[Row],
    *,
    pad: int,
    batch_size: int = 8,
    share_prefix: bool = True,
) -> list[Float[Tensor, " answer"]]:
    """Per row, ``side``'s log-probability of each of its answer tokens (on the CPU)."""
    out: list[Tensor] = []
    for (seq, start), logp in _scored(side, rows, pad, batch_size, share_prefix):
        target = torch.tensor(seq[start:], device=logp.device)
        out.append(logp.gather(-1, target[:, None]).squeeze(-1).cpu())
    return out
