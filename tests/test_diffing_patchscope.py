"""Patchscope: a vector is patched into the identity prompt's last position and read against
random vectors of the same norm; at the last layer it reads like the logit lens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from auditlens.diffing import patchscope
from auditlens.diffing.patchscope import PatchscopeSettings
from auditlens.errors import AuditlensError
from auditlens.models import ModelPair

TOKEN = 284  # " capital": a whole word in the tiny tokenizer


@pytest.fixture
def pair(tiny_model_factory: Callable[..., Any], tiny_tokenizer: Any) -> ModelPair:
    return ModelPair.from_models(tiny_model_factory("llama"), None, tiny_tokenizer)


def test_a_token_direction_at_the_last_layer_is_read_as_that_token(pair: ModelPair) -> None:
    assert pair.tokenizer.decode([TOKEN]) == " capital"
    row = pair.finetuned.hf.get_output_embeddings().weight[TOKEN].detach()
    last = pair.n_layers - 1
    reading = patchscope.run(pair.finetuned, pair.tokenizer, pair.arch, row, last, 3.0)
    assert reading.scales == [0.5, 1.0, 2.0, 4.0] and reading.layer == last
    for tokens, beats in zip(reading.tokens, reading.beats_null, strict=True):
        assert tokens[0][0] == " capital" and " capital" in beats
    assert "capital" in patchscope.words(reading)
    # larger norms sharpen the reading: the token's probability grows with the scale
    probs = [tokens[0][1] for tokens in reading.tokens]
    assert probs == sorted(probs) and probs[-1] > probs[0]


def test_the_patch_replaces_the_last_position_only(pair: ModelPair) -> None:
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(pair.d_model, generator=gen)
    settings = PatchscopeSettings(scales=(1.0,), n_random=2, top_k=5)
    reading = patchscope.run(pair.finetuned, pair.tokenizer, pair.arch, v, 1, 2.0, settings)
    ids = pair.tokenizer(settings.prompt, return_tensors="pt")["input_ids"]
    model = pair.finetuned.hf
    patched = (v / v.norm() * 2.0).to(torch.float32)

    def hook(mod: Any, args: Any, output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output
        hidden = hidden.clone()
        hidden[:, -1] = patched
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = model.model.layers[1].register_forward_hook(hook)
    try:
        with torch.no_grad():
            probs = model(input_ids=ids).logits[0, -1].softmax(-1)
    finally:
        handle.remove()
    top = torch.topk(probs, 5)
    want = [(pair.tokenizer.decode([int(i)]), float(p)) for p, i in zip(*top, strict=True)]
    assert [t for t, _ in reading.tokens[0]] == [t for t, _ in want]
    assert reading.tokens[0][0][1] == pytest.approx(want[0][1], rel=1e-4)


def test_a_zero_vector_reads_nothing(pair: ModelPair) -> None:
    reading = patchscope.run(
        pair.finetuned, pair.tokenizer, pair.arch, torch.zeros(pair.d_model), 1, 2.0
    )
    assert reading.tokens == [[]] * 4 and reading.beats_null == [[]] * 4
    assert patchscope.words(reading) == []
    assert all(reading.random_tokens)  # the null is still read


def test_bad_settings_are_one_line_errors(pair: ModelPair) -> None:
    with pytest.raises(AuditlensError, match="scales must be positive"):
        PatchscopeSettings(scales=(0.0, 1.0))
    with pytest.raises(AuditlensError, match="n_random"):
        PatchscopeSettings(n_random=0)
    with pytest.raises(AuditlensError, match="positive layer norm"):
        patchscope.run(pair.finetuned, pair.tokenizer, pair.arch, torch.ones(pair.d_model), 1, 0.0)
