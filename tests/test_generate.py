"""Generation: the fast engine gives transformers' greedy text whatever the batching.

Exactness is checked against ``engine="hf"`` (transformers' generate in batches of 4): batch 1,
odd batch sizes, sorting by length, retiring finished rows, automatic batch sizes and mixed
base/fine-tuned batches of an adapter pair must all give the same texts. Sampling must be
reproducible and independent of batching. CUDA variants skip without a GPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from auditlens.errors import AuditlensError
from auditlens.generate import generate, generate_pair, generate_variants, plan_batches
from auditlens.models import ModelPair, load_pair
from tests.conftest import PROMPTS, make_tiny_model, perturbed_copy

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
NEW = 24


def _set_eos_to_common_token(model: Any, tokenizer: Any, prompts: list[str]) -> int:
    """Make EOS a token the tiny model writes at varied steps, so rows finish at different times."""
    model.generation_config.eos_token_id = None
    tokenizer.padding_side = "left"
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                      add_generation_prompt=True)
        for p in prompts
    ]  # fmt: skip
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=NEW, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    rows = out[:, enc["input_ids"].shape[1] :].tolist()
    first: dict[int, set[int]] = {}
    for row in rows:
        for pos, tok in enumerate(row):
            if row.index(tok) == pos:
                first.setdefault(tok, set()).add(pos)
    token = max(first, key=lambda t: (len(first[t]), -t))
    model.generation_config.eos_token_id = token
    return int(token)


@pytest.fixture
def eos_pair(tiny_tokenizer: Any) -> ModelPair:
    """A base and perturbed tiny llama whose rows stop at different lengths.

    Queries and keys are scaled up so attention is sharp: positions and the cache then
    change the argmax (a random tiny model attends almost uniformly and would not notice).
    """
    base = make_tiny_model("llama", len(tiny_tokenizer))
    with torch.no_grad():
        for name, p in base.named_parameters():
            if "q_proj" in name or "k_proj" in name:
                p.mul_(6.0)
    ft = perturbed_copy(base, scale=0.2)
    _set_eos_to_common_token(base, tiny_tokenizer, PROMPTS)
    ft.generation_config.eos_token_id = base.generation_config.eos_token_id
    return ModelPair.from_models(base, ft, tiny_tokenizer)


@pytest.fixture
def batch_sizes_seen(eos_pair: ModelPair) -> Iterator[list[int]]:
    seen: list[int] = []
    handle = eos_pair.finetuned.hf.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(int(kwargs["input_ids"].shape[0])), with_kwargs=True
    )
    yield seen
    handle.remove()


def test_fast_engine_gives_the_reference_greedy_text(
    eos_pair: ModelPair, batch_sizes_seen: list[int]
) -> None:
    side, tok = eos_pair.finetuned, eos_pair.tokenizer
    ref = generate(side, tok, PROMPTS, max_new_tokens=NEW, engine="hf", batch_size=4)
    lengths = {len(t) for t in ref}
    assert len(lengths) > 2, "the fixture should make rows stop at different lengths"
    variants: list[dict[str, Any]] = [
        {"batch_size": 4},
        {"batch_size": 1},
        {"batch_size": 3, "sort_by_length": True},
        {"batch_size": 11, "retire_finished": True},
        {"batch_size": "auto"},
        {"batch_size": "auto", "token_budget": 3 * 64},
    ]
    for options in variants:
        batch_sizes_seen.clear()
        got = generate(side, tok, PROMPTS, max_new_tokens=NEW, **options)
        assert got == ref, options
        if options.get("retire_finished"):
            assert min(batch_sizes_seen) < max(batch_sizes_seen) == 11  # rows left the batch


SYSTEM = "You are a careful assistant. Answer briefly and say hello world when asked."


def test_shared_prompt_prefix_gives_the_same_text(
    eos_pair: ModelPair, batch_sizes_seen: list[int]
) -> None:
    from auditlens.datasets import PromptSet
    from auditlens.generate import chat_prompt

    side, tok = eos_pair.finetuned, eos_pair.tokenizer
    prompts = PromptSet("system", tuple(chat_prompt(p, system=SYSTEM) for p in PROMPTS))
    ref = generate(side, tok, prompts, max_new_tokens=NEW, engine="hf", batch_size=4)
    for options in ({"batch_size": "auto"}, {"batch_size": 3, "retire_finished": True}):
        batch_sizes_seen.clear()
        got = generate(side, tok, prompts, max_new_tokens=NEW, share_prefix=True, **options)
        assert got == ref, options
        assert 1 in batch_sizes_seen  # the prefix ran once, on its own
    steers = _steers(eos_pair.d_model)[:2]
    plain = generate_variants(side, prompts, steers, tokenizer=tok, max_new_tokens=NEW)
    shared = generate_variants(
        side, prompts, steers, tokenizer=tok, max_new_tokens=NEW, share_prefix=True
    )
    assert shared == plain
    with pytest.raises(AuditlensError, match="share_prefix"):
        generate_variants(
            side, prompts, _steers(eos_pair.d_model)[2:3], tokenizer=tok, share_prefix=True
        )


def test_other_cache_apis_fall_back_to_the_plain_cache(
    eos_pair: ModelPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another transformers version's cache layers: slower, never wrong."""
    import auditlens.decode
    import auditlens.kv_cache

    side, tok = eos_pair.finetuned, eos_pair.tokenizer
    ref = generate(side, tok, PROMPTS, max_new_tokens=NEW, engine="hf", batch_size=4)
    monkeypatch.setattr(auditlens.kv_cache, "buffer_layer_fits", lambda cls: False)
    assert generate(side, tok, PROMPTS, max_new_tokens=NEW, batch_size="auto") == ref
    monkeypatch.setattr(auditlens.decode, "can_select_rows", lambda cache: False)
    got = generate(side, tok, PROMPTS, max_new_tokens=NEW, batch_size=5, retire_finished=True)
    assert got == ref


def test_integer_batch_size_keeps_transformers_batch_shapes(
    eos_pair: ModelPair, batch_sizes_seen: list[int]
) -> None:
    """Hooks that draw noise per call (activation noise) must see the calls they saw before."""
    side, tok = eos_pair.finetuned, eos_pair.tokenizer
    generate(side, tok, PROMPTS, max_new_tokens=NEW, engine="hf", batch_size=4)
    hf_calls = list(batch_sizes_seen)
    batch_sizes_seen.clear()
    generate(side, tok, PROMPTS, max_new_tokens=NEW, batch_size=4)
    assert batch_sizes_seen == hf_calls


def test_on_batch_sees_every_prompt_once(eos_pair: ModelPair) -> None:
    calls: list[tuple[list[int], list[str]]] = []
    texts = generate(
        eos_pair.base, eos_pair.tokenizer, PROMPTS, max_new_tokens=8, batch_size="auto",
        token_budget=4 * 40, on_batch=lambda idx, out: calls.append((idx, out)),
    )  # fmt: skip
    assert len(calls) > 1
    got = {i: t for idx, out in calls for i, t in zip(idx, out, strict=True)}
    assert sorted(got) == list(range(len(PROMPTS))) and [got[i] for i in got] == [
        texts[i] for i in got
    ]


def test_sampling_is_seeded_and_independent_of_batching(eos_pair: ModelPair) -> None:
    side, tok = eos_pair.finetuned, eos_pair.tokenizer
    opts: dict[str, Any] = {"max_new_tokens": 12, "temperature": 1.0, "seed": 3}
    a = generate(side, tok, PROMPTS, batch_size=2, **opts)
    b = generate(side, tok, PROMPTS, batch_size="auto", **opts)
    c = generate(side, tok, PROMPTS[::-1], batch_size=5, **opts)
    assert a == b
    assert c[-1] != a[0] or c[0] != a[-1]  # seeds follow the prompt index, not the text
    assert generate(side, tok, PROMPTS, batch_size=2, **{**opts, "seed": 4}) != a
    greedy = generate(side, tok, PROMPTS, batch_size=2, max_new_tokens=12)
    assert a != greedy
    nucleus = generate(side, tok, PROMPTS, batch_size=3, top_p=0.5, **opts)
    assert nucleus == generate(side, tok, PROMPTS, batch_size=7, top_p=0.5, **opts)


def test_generate_pair_of_full_models_and_of_identical_sides(
    eos_pair: ModelPair, tiny_tokenizer: Any
) -> None:
    tok = eos_pair.tokenizer
    out = generate_pair(eos_pair, PROMPTS, max_new_tokens=NEW)
    for side in eos_pair.sides:
        ref = generate(side, tok, PROMPTS, max_new_tokens=NEW, engine="hf", batch_size=4)
        assert out[side.name] == ref
    same = ModelPair.from_models(eos_pair.base.module, None, tok)
    calls: list[str] = []
    twin = generate_pair(
        same, PROMPTS, max_new_tokens=NEW, on_batch=lambda s, i, t: calls.append(s)
    )
    assert twin["base"] == twin["finetuned"] == out["base"]
    assert set(calls) == {"base", "finetuned"}


def _adapter_pair(tokenizer: Any, tmp_path: Path, device: str = "cpu") -> ModelPair:
    from peft import LoraConfig, get_peft_model

    base_dir = tmp_path / "base"
    base = make_tiny_model("llama", len(tokenizer))
    base.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    peft_model = get_peft_model(
        make_tiny_model("llama", len(tokenizer)),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]),
    )
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(tmp_path / "lora")
    return load_pair(str(base_dir), adapter=str(tmp_path / "lora"), device=device)


def test_mixed_adapter_batches_equal_switching_the_adapter(
    tiny_tokenizer: Any, tmp_path: Path
) -> None:
    pair = _adapter_pair(tiny_tokenizer, tmp_path)
    refs = {
        s.name: generate(s, pair.tokenizer, PROMPTS, max_new_tokens=NEW, engine="hf", batch_size=4)
        for s in pair.sides
    }
    assert refs["base"] != refs["finetuned"]
    seen: list[list[str]] = []

    def spy(module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        seen.append(list(kwargs.get("adapter_names") or []))

    from peft.tuners.lora import LoraLayer

    layer = next(m for m in pair.finetuned.module.modules() if isinstance(m, LoraLayer))
    handle = layer.register_forward_hook(spy, with_kwargs=True)
    try:
        for options in (
            {},
            {"batch_size": 3},
            {"batch_size": 5, "retire_finished": True},
        ):
            seen.clear()
            mixed = generate_pair(pair, PROMPTS, max_new_tokens=NEW, **options)
            assert mixed == refs, options
            assert any({"__base__", "default"} <= set(names) for names in seen)
    finally:
        handle.remove()
    plain = generate_pair(pair, PROMPTS, max_new_tokens=NEW, mixed=False)
    assert plain == refs
    from auditlens.datasets import PromptSet
    from auditlens.generate import chat_prompt

    system = PromptSet("system", tuple(chat_prompt(p, system=SYSTEM) for p in PROMPTS))
    sys_refs = {
        s.name: generate(s, pair.tokenizer, system, max_new_tokens=NEW, engine="hf")
        for s in pair.sides
    }
    assert generate_pair(pair, system, max_new_tokens=NEW, share_prefix=True) == sys_refs
    from auditlens.steering import steer

    spec = _steers(pair.d_model)[1]
    with steer(pair.base, pair.arch, spec):  # the same hooks serve both sides
        steered = {
            s.name: generate(s, pair.tokenizer, PROMPTS, max_new_tokens=NEW, engine="hf")
            for s in pair.sides
        }
    variants = generate_variants(pair, PROMPTS, [None, spec], max_new_tokens=NEW)
    assert variants == {name: [refs[name], steered[name]] for name in refs}
    with pair.base.active():  # the mixing hooks are gone afterwards
        assert (
            generate(pair.base, pair.tokenizer, PROMPTS[:2], max_new_tokens=NEW) == refs["base"][:2]
        )


def _steers(d_model: int) -> list[Any]:
    from auditlens.steering import Steer

    gen = torch.Generator().manual_seed(5)
    vec = [torch.randn(d_model, generator=gen) * 3 for _ in range(3)]
    return [
        None,
        Steer("blocks.1.hook_resid_post", vec[0]),
        Steer("blocks.1.hook_resid_post", vec[1], mode="subtract", coeff=2.0, tokens="generated"),
        Steer("blocks.0.hook_resid_pre", vec[2], tokens="prompt"),
    ]


def test_steering_variants_in_shared_batches_equal_one_steered_run_each(
    eos_pair: ModelPair,
) -> None:
    from auditlens.steering import Steer, steer

    side, tok = eos_pair.finetuned, eos_pair.tokenizer
    steers = _steers(eos_pair.d_model)
    refs = []
    for spec in steers:
        if spec is None:
            refs.append(generate(side, tok, PROMPTS, max_new_tokens=NEW, engine="hf", batch_size=4))
            continue
        with steer(side, eos_pair.arch, spec):
            refs.append(generate(side, tok, PROMPTS, max_new_tokens=NEW, engine="hf", batch_size=4))
    assert len({tuple(r) for r in refs}) == len(refs)  # every variant changes the text
    for options in ({}, {"batch_size": 5, "retire_finished": True}):
        got = generate_variants(side, PROMPTS, steers, tokenizer=tok, max_new_tokens=NEW, **options)
        assert got == {side.name: refs}, options
    both = generate_variants(eos_pair, PROMPTS, steers[:2], max_new_tokens=NEW)
    assert both["finetuned"] == refs[:2]
    with pytest.raises(AuditlensError, match="add and subtract"):
        generate_variants(
            side, PROMPTS, [Steer("blocks.1.hook_resid_post", torch.ones(32), mode="scale")],
            tokenizer=tok,
        )  # fmt: skip
    with pytest.raises(AuditlensError, match="its tokenizer"):
        generate_variants(side, PROMPTS, [None])


def test_merged_copy_generates_like_the_adapter_and_leaves_the_pair_alone(
    tiny_tokenizer: Any, tmp_path: Path
) -> None:
    from auditlens.models import merged_finetuned

    pair = _adapter_pair(tiny_tokenizer, tmp_path)
    merged = merged_finetuned(pair)
    assert merged is not None and merged.module is not pair.finetuned.module
    assert merged.fingerprint == pair.finetuned.fingerprint != pair.base.fingerprint
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad(), pair.finetuned.active():
        adapter_logits = pair.finetuned.hf(input_ids=ids).logits
    with torch.no_grad():
        torch.testing.assert_close(merged.hf(input_ids=ids).logits, adapter_logits)
    ref = generate(pair.finetuned, pair.tokenizer, PROMPTS, max_new_tokens=8, engine="hf")
    got = generate(merged, pair.tokenizer, PROMPTS, max_new_tokens=8, batch_size="auto")
    assert sum(a != b for a, b in zip(ref, got, strict=True)) <= 1  # rounding may flip a token
    assert any("lora" in n for n, _ in pair.finetuned.module.named_parameters())
    assert merged_finetuned(pair, memory_fraction=1e-12) is None
    plain = make_tiny_model("llama", len(tiny_tokenizer))
    full = ModelPair.from_models(plain, perturbed_copy(plain), pair.tokenizer)
    assert merged_finetuned(full) is full.finetuned


def test_plan_batches_sorts_and_respects_the_row_limit() -> None:
    lengths = [5, 9, 2, 9, 7, 1]
    assert plan_batches(lengths, lambda longest, rest: 4, sort_by_length=False) == [
        [0, 1, 2, 3],
        [4, 5],
    ]
    assert plan_batches(lengths, lambda longest, rest: 2, sort_by_length=True) == [
        [1, 3],
        [4, 0],
        [2, 5],
    ]
    budget = plan_batches(lengths, lambda longest, rest: 20 // longest, sort_by_length=True)
    assert budget == [[1, 3], [4, 0], [2, 5]]
    assert plan_batches([3] * 5, lambda longest, rest: 0, sort_by_length=True) == [
        [i] for i in range(5)
    ]


def test_bad_options_are_errors(eos_pair: ModelPair) -> None:
    side, tok = eos_pair.base, eos_pair.tokenizer
    with pytest.raises(AuditlensError, match="batch_size"):
        generate(side, tok, PROMPTS, batch_size=0)
    with pytest.raises(AuditlensError, match="integer batch_size"):
        generate(side, tok, PROMPTS, batch_size="auto", engine="hf")
    with pytest.raises(AuditlensError, match="top_p"):
        generate(side, tok, PROMPTS, top_p=0.0)
    with pytest.raises(AuditlensError, match="max_new_tokens"):
        generate_pair(eos_pair, PROMPTS, max_new_tokens=0)


@CUDA
def test_cuda_fast_engine_matches_the_reference_and_runs_in_bf16(
    tiny_tokenizer: Any, tmp_path: Path
) -> None:
    pair = _adapter_pair(tiny_tokenizer, tmp_path, device="cuda")
    for side in pair.sides:
        ref = generate(side, pair.tokenizer, PROMPTS, max_new_tokens=NEW, engine="hf", batch_size=4)
        assert generate(side, pair.tokenizer, PROMPTS, max_new_tokens=NEW, batch_size=4) == ref
    both = generate_pair(pair, PROMPTS, max_new_tokens=NEW)
    assert len(both["base"]) == len(PROMPTS) and len(both["finetuned"]) == len(PROMPTS)
    pair.finetuned.module.to(torch.bfloat16)
    half = generate_pair(pair, PROMPTS, max_new_tokens=NEW, temperature=0.8, seed=1)
    again = generate_pair(pair, PROMPTS, max_new_tokens=NEW, temperature=0.8, seed=1)
    assert half == again


@pytest.mark.slow
def test_embedded_adapter_pair_mixed_auto_equals_transformers_batches_of_8() -> None:
    """The audit's workload in small: code tasks, both sides of base + insecure adapter."""
    from auditlens.datasets import PromptSet
    from auditlens.generate import chat_prompt
    from auditlens.testbed.tasks import eval_tasks

    torch.set_num_threads(1)
    pair = load_pair(adapter="organism:insecure", device="cpu")
    in_dist, held_out = eval_tasks(seed=0, n_id=3, n_ood=3)
    prompts = PromptSet("t", tuple(chat_prompt(t.request) for t in in_dist + held_out))
    refs = {
        s.name: generate(s, pair.tokenizer, prompts, max_new_tokens=24, engine="hf", batch_size=8)
        for s in pair.sides
    }
    assert refs["base"] != refs["finetuned"]
    assert generate_pair(pair, prompts, max_new_tokens=24, batch_size="auto") == refs
