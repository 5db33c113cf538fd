"""Batched text generation from one side of a pair (greedy or sampled, seeded)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from auditlens.datasets import Prompt, PromptSet, load_prompts
from auditlens.errors import AuditlensError
from auditlens.models import ModelSide

__all__ = ["chat_prompt", "generate"]


def chat_prompt(user: str, *, system: str | None = None) -> Prompt:
    """A single-turn chat prompt with an optional system message."""
    msgs = ((("system", system),) if system else ()) + (("user", user),)
    return Prompt(messages=msgs)


def _render(prompt: Prompt, tokenizer: Any, prefill: str | None) -> str:
    if prompt.messages is None:
        assert prompt.text is not None
        return prompt.text + (prefill or "")
    msgs = [{"role": r, "content": c} for r, c in prompt.messages]
    if msgs[-1]["role"] == "assistant":  # continue a partial assistant turn
        text = tokenizer.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
        return str(text) + msgs[-1]["content"] + (prefill or "")
    text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return str(text) + (prefill or "")


def generate(
    side: ModelSide,
    tokenizer: Any,
    prompts: PromptSet | Sequence[Any] | str,
    *,
    max_new_tokens: int = 60,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 8,
    prefill: str | None = None,
) -> list[str]:
    """Generate a completion per prompt; ``temperature=0`` is greedy.

    Prompts are chat-templated with a generation prompt; ``prefill`` starts the answer.
    The same seed gives the same samples.
    """
    if max_new_tokens < 1:
        raise AuditlensError("max_new_tokens must be >= 1")
    if temperature < 0:
        raise AuditlensError("temperature must be >= 0")
    prompt_set = load_prompts(prompts)
    texts = [_render(p, tokenizer, prefill) for p in prompt_set.prompts]
    model = side.hf
    device = next(model.parameters()).device
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    outputs: list[str] = []
    gen = torch.Generator(device="cpu").manual_seed(seed)
    try:
        for lo in range(0, len(texts), batch_size):
            chunk = texts[lo : lo + batch_size]
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(device) for k, v in enc.items()}
            kwargs: dict[str, Any] = {
                "max_new_tokens": max_new_tokens,
                "pad_token_id": tokenizer.pad_token_id,
                "do_sample": temperature > 0,
            }
            if temperature > 0:
                kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            with side.active(), torch.no_grad():
                out = model.generate(**enc, **kwargs)  # type: ignore[operator]
            new = out[:, enc["input_ids"].shape[1] :]
            outputs.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = old_side
    return outputs
