"""Steering: modes, token ranges (prompt/generated/all), every architecture, no lasting change."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch import Tensor

from auditlens.adversary import Steer, steer, steer_pair
from auditlens.errors import AuditlensError
from auditlens.generate import generate
from auditlens.hashing import state_dict_sha256
from auditlens.hooks import attach_edit
from auditlens.models import ModelPair
from auditlens.sites import HOOKS, arch_spec, parse_site

ARCHS = ["llama", "qwen2", "gemma", "gpt2", "gpt_neox"]
D = 32


@contextmanager
def recording(model: torch.nn.Module, site: str) -> Iterator[list[Tensor]]:
    """Record the hidden state at ``site`` on every forward call (after earlier hooks ran)."""
    calls: list[Tensor] = []

    def keep(hidden: Tensor) -> Tensor:
        calls.append(hidden.detach().clone())
        return hidden

    handle = attach_edit(model, arch_spec(model), parse_site(site, 3), keep)
    try:
        yield calls
    finally:
        handle.remove()


def _encode(tok: Any, texts: list[str], side: str = "right") -> dict[str, Tensor]:
    old = tok.padding_side
    tok.padding_side = side
    try:
        return dict(tok(texts, return_tensors="pt", padding=True))
    finally:
        tok.padding_side = old


def _edits(
    model: torch.nn.Module, site: str, steers: list[Steer], run: Callable[[], Any]
) -> tuple[list[Tensor], list[Tensor]]:
    """Hidden states before and after the steering edits at ``site``, per forward call."""
    with (
        recording(model, site) as before,
        steer(model, arch_spec(model), steers),
        recording(model, site) as after,
    ):
        run()
    return before, after


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_add_and_subtract_shift_every_position(
    tiny_model_factory: Any, tiny_tokenizer: Any
) -> None:
    model = tiny_model_factory("llama")
    enc = _encode(tiny_tokenizer, ["hello world", "def add(a, b): return a + b"])
    v = torch.randn(D, generator=torch.Generator().manual_seed(1))
    site = "blocks.1.hook_resid_post"
    for mode, sign in (("add", 1.0), ("subtract", -1.0)):
        before, after = _edits(model, site, [Steer(site, v, mode, coeff=2.5)], lambda: model(**enc))
        assert len(before) == len(after) == 1
        torch.testing.assert_close(after[0] - before[0], sign * 2.5 * v.expand_as(before[0]))


def test_scale_and_project_out_act_on_the_component(
    tiny_model_factory: Any, tiny_tokenizer: Any
) -> None:
    model = tiny_model_factory("llama")
    enc = _encode(tiny_tokenizer, ["hello world", "The quick brown fox"])
    v = torch.randn(D, generator=torch.Generator().manual_seed(2))
    u = v / v.norm()
    site = "blocks.0.hook_mlp_out"
    with torch.no_grad():
        before, after = _edits(
            model, site, [Steer(site, v * 7, "project_out")], lambda: model(**enc)
        )
    assert (after[0] @ u).abs().max() < 1e-5
    torch.testing.assert_close(after[0], before[0] - (before[0] @ u)[..., None] * u)
    with torch.no_grad():
        before, after = _edits(
            model, site, [Steer(site, v, "scale", coeff=3.0)], lambda: model(**enc)
        )
    torch.testing.assert_close(after[0] @ u, 3.0 * (before[0] @ u), rtol=1e-4, atol=1e-6)
    ortho = after[0] - (after[0] @ u)[..., None] * u
    torch.testing.assert_close(
        ortho, before[0] - (before[0] @ u)[..., None] * u, rtol=1e-4, atol=1e-6
    )
    # a subspace: project out two directions at once
    basis = torch.randn(2, D, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        _, after = _edits(model, site, [Steer(site, basis, "project_out")], lambda: model(**enc))
    assert (after[0] @ basis.T).abs().max() < 1e-5


def test_token_ranges_during_generation(tiny_pair: ModelPair, tiny_tokenizer: Any) -> None:
    side, model = tiny_pair.finetuned, tiny_pair.finetuned.hf
    v = torch.full((D,), 0.5)
    site = "blocks.1.hook_resid_pre"
    prompts = ["hello world", "What is the capital of France?"]
    for tokens in ("prompt", "generated", "all"):
        before, after = _edits(
            model,
            site,
            [Steer(site, v, tokens=tokens)],  # type: ignore[arg-type]
            lambda: generate(side, tiny_tokenizer, prompts, max_new_tokens=4),
        )
        assert len(after) == 4  # one prompt call, then one call per new token
        assert after[0].shape[1] > 1 and all(a.shape[1] == 1 for a in after[1:])
        diffs = [a - b for a, b in zip(after, before, strict=True)]
        prompt_on = tokens in ("prompt", "all")
        generated_on = tokens in ("generated", "all")
        assert torch.allclose(
            diffs[0], v.expand_as(diffs[0]) if prompt_on else torch.zeros_like(diffs[0])
        )
        for diff in diffs[1:]:
            assert torch.allclose(
                diff, v.expand_as(diff) if generated_on else torch.zeros_like(diff)
            )


def test_token_ranges_in_a_scoring_pass_use_prompt_lengths(
    tiny_model_factory: Any, tiny_tokenizer: Any
) -> None:
    model = tiny_model_factory("qwen2")
    enc = _encode(tiny_tokenizer, ["hello world, how are you", "SELECT * FROM users WHERE"])
    lengths = torch.tensor([2, 4])
    v = torch.ones(D)
    site = "blocks.2.hook_attn_out"
    generated_only = Steer(site, v, tokens="generated")
    with (
        recording(model, site) as before,
        steer(model, arch_spec(model), generated_only, prompt_lengths=lengths),
        recording(model, site) as after,
    ):
        model(**enc)
    diff = (after[0] - before[0]).abs().sum(-1)
    positions = torch.arange(diff.shape[1])
    expected = positions[None, :] >= lengths[:, None]
    assert torch.equal(diff > 0, expected)
    # the handle can also set lengths after entering; a mismatched batch is a clear error
    with steer(model, arch_spec(model), Steer(site, v, tokens="prompt")) as handle:
        handle.prompt_lengths = [1, 2, 3]
        with pytest.raises(AuditlensError, match="prompt_lengths has 3 rows"):
            model(**enc)


@pytest.mark.parametrize("arch", ARCHS)
def test_steering_works_on_every_architecture(
    arch: str, tiny_model_factory: Any, tiny_tokenizer: Any
) -> None:
    model = tiny_model_factory(arch)
    enc = _encode(tiny_tokenizer, ["hello world", "import os"])
    digest = state_dict_sha256(model)
    hooks = _hook_count(model)
    with torch.no_grad():
        clean = model(**enc).logits
    v = torch.randn(D, generator=torch.Generator().manual_seed(0)) * 3
    for hook in HOOKS:
        site = f"blocks.1.{hook}"
        with torch.no_grad():
            before, after = _edits(model, site, [Steer(site, v)], lambda: model(**enc))
            with steer(model, arch_spec(model), Steer(site, v)):
                steered = model(**enc).logits
        torch.testing.assert_close(after[0] - before[0], v.expand_as(before[0]))
        assert not torch.allclose(steered, clean)
    with torch.no_grad():
        assert torch.equal(model(**enc).logits, clean)
    assert state_dict_sha256(model) == digest and _hook_count(model) == hooks


def test_model_is_unchanged_after_steering_even_on_exceptions(
    tiny_pair: ModelPair, tiny_tokenizer: Any, prompts: list[str]
) -> None:
    side, model = tiny_pair.finetuned, tiny_pair.finetuned.hf
    digest, hooks = state_dict_sha256(model), _hook_count(model)
    clean = generate(side, tiny_tokenizer, prompts[:3], max_new_tokens=5)
    v = torch.randn(D) * 50
    with steer_pair(
        tiny_pair,
        [Steer("blocks.0.hook_resid_post", v), Steer("blocks.-1.hook_mlp_out", v, "project_out")],
    ):
        steered = generate(side, tiny_tokenizer, prompts[:3], max_new_tokens=5)
    assert steered != clean
    with (
        pytest.raises(RuntimeError, match="boom"),
        steer_pair(tiny_pair, Steer("blocks.1.hook_resid_pre", v)),
    ):
        generate(side, tiny_tokenizer, prompts[:1], max_new_tokens=2)
        raise RuntimeError("boom")
    assert state_dict_sha256(model) == digest and _hook_count(model) == hooks
    assert generate(side, tiny_tokenizer, prompts[:3], max_new_tokens=5) == clean


def test_steering_validates_its_input(tiny_model_factory: Any) -> None:
    model = tiny_model_factory("llama")
    with pytest.raises(AuditlensError, match="unknown steering mode"):
        Steer("blocks.0.hook_resid_post", torch.ones(D), "multiply")  # type: ignore[arg-type]
    with pytest.raises(AuditlensError, match="unknown token range"):
        Steer("blocks.0.hook_resid_post", torch.ones(D), tokens="later")  # type: ignore[arg-type]
    with pytest.raises(AuditlensError, match="non-zero"):
        Steer("blocks.0.hook_resid_post", torch.zeros(D), "project_out")
    with pytest.raises(AuditlensError, match="needs a \\[d_model\\] vector"):
        Steer("blocks.0.hook_resid_post", torch.ones(2, D), "add")
    arch = arch_spec(model)
    with (
        pytest.raises(AuditlensError, match="d_model is 32"),
        steer(model, arch, Steer("blocks.0.hook_resid_post", torch.ones(7))),
    ):
        pass
    with (
        pytest.raises(AuditlensError, match="unknown site"),
        steer(model, arch, Steer("blocks.0.resid", torch.ones(D))),
    ):
        pass
