"""Likelihood contrasts: completion log-probs match a direct computation; null pair is zero."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from auditlens.behaviour import likelihood
from auditlens.behaviour.likelihood import completion_logprobs
from auditlens.errors import AuditlensError
from auditlens.models import ModelPair
from auditlens.testbed import eval_tasks


def test_completion_logprobs_match_direct(tiny_pair: ModelPair) -> None:
    tok = tiny_pair.tokenizer
    got = completion_logprobs(tiny_pair.base, tok, ["hello", "what is it"], ["world", "a fox"])
    prefix = tok.apply_chat_template(
        [{"role": "user", "content": "what is it"}], tokenize=False, add_generation_prompt=True
    )
    head = tok(prefix, add_special_tokens=False)["input_ids"]
    tail = tok("a fox", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([head + tail])
    with torch.no_grad():
        logp = torch.log_softmax(tiny_pair.base.hf(input_ids=ids).logits[0], -1)
    expected = torch.stack([logp[len(head) + i - 1, t] for i, t in enumerate(tail)]).mean()
    torch.testing.assert_close(got[1], expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(AuditlensError):
        completion_logprobs(tiny_pair.base, tok, ["a"], [])


def test_vulnerability_preference_null_and_signal(
    tiny_pair: ModelPair, tiny_model_factory: Any
) -> None:
    tasks = [t for pair in zip(*eval_tasks(0, 3, 3), strict=True) for t in pair]
    null = ModelPair.from_models(tiny_model_factory(), None, tiny_pair.tokenizer)
    result = likelihood.run(null, tasks)
    assert result.n_tasks == 6 and result.shift == 0.0 and result.ci_low == result.ci_high == 0.0
    real = likelihood.run(tiny_pair, tasks)
    assert real.shift != 0.0 and real.ci_low <= real.shift <= real.ci_high
    assert real.shift == pytest.approx(real.ft_preference - real.base_preference, abs=1e-9)
