"""The attention sink and the chat template no longer fill the scan's tables: a fine-tune
whose only large change sits on a template token shared by every prompt (like SmolLM2's
``<|im_start|>``, ||Δh|| ~1000) shows it in "positions measured apart", not in the rows."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

from auditlens.datasets import MaskSpec, iter_token_batches, load_prompts, shared_prefix_length
from auditlens.diffing import scan
from auditlens.models import ModelPair
from auditlens.reports.sections import Table
from tests.conftest import PROMPTS, perturbed_copy


def _sink_pair(tokenizer: Any, factory: Callable[..., torch.nn.Module]) -> ModelPair:
    """A small change everywhere plus a huge one on the template token ``<|im_start|>``."""
    base = factory("llama")
    ft = perturbed_copy(base, scale=0.02)
    sink = tokenizer.convert_tokens_to_ids("<|im_start|>")
    with torch.no_grad():
        emb = ft.get_input_embeddings().weight
        emb[sink] += 40.0 * torch.randn(emb.shape[1], generator=torch.Generator().manual_seed(3))
    return ModelPair.from_models(base, ft, tokenizer)


def _tables(result: scan.ScanResult) -> dict[str, Table]:
    ev = scan.evidence(result)
    return {s.title.split(" at ")[0]: s for s in ev.sections if isinstance(s, Table)}


def test_content_mask_skips_template_sink_and_shared_prefix(tiny_tokenizer: Any) -> None:
    prompts = load_prompts(
        [
            {
                "messages": [
                    {"role": "system", "content": "Be kind."},
                    {"role": "user", "content": c},
                ]
            }
            for c in ("hello world", "the quick brown fox")
        ]
    )
    shared = shared_prefix_length(prompts, tiny_tokenizer)
    (batch,) = iter_token_batches(prompts, tiny_tokenizer, mask=MaskSpec("content"))
    (full,) = iter_token_batches(prompts, tiny_tokenizer, mask=MaskSpec("all"))
    assert shared >= 4  # "<|im_start|>system\nBe kind." is the same in both
    for row in range(2):
        kept = batch.token_mask[row].nonzero().flatten().tolist()
        assert kept and min(kept) >= shared
        text = tiny_tokenizer.decode(batch.input_ids[row, kept].tolist())
        assert "im_start" not in text and "user" not in text
        assert text.replace(" ", "") in ("helloworld", "thequickbrownfox")
        assert int(full.token_mask[row].sum()) > len(kept)


def test_sink_shared_by_every_prompt_no_longer_fills_the_table(
    tiny_tokenizer: Any, tiny_model_factory: Callable[..., torch.nn.Module]
) -> None:
    pair = _sink_pair(tiny_tokenizer, tiny_model_factory)
    prompts = PROMPTS * 2  # repeated prompts: each context must still appear once
    site = "blocks.1.hook_resid_post"
    old = scan.run(pair, prompts, scan.ScanSettings(sites=(site,), mask="all"), progress=False)
    new = scan.run(pair, prompts, scan.ScanSettings(sites=(site,)), progress=False)
    old_rows = _tables(old)["Most-changed positions"].rows
    new_rows = _tables(new)["Most-changed positions"].rows
    # Without the fix the template token fills the table (the failure this guards against).
    assert sum(r[0] == "<|im_start|>" for r in old_rows) >= len(old_rows) // 2
    assert new_rows and not any("<|im_start|>" in r[0] for r in new_rows)
    contexts = [r[2] for r in new_rows]
    assert len(contexts) == len(set(contexts))
    kl_rows = _tables(new)["Tokens with the highest KL(ft||base)"].rows
    assert len({r[0] for r in kl_rows}) == len(kl_rows)
    # The sink and template positions are measured apart, and they are where the change is.
    apart = new.apart
    assert apart["sink"][site]["n_tokens"] == len(prompts)
    assert apart["sink"][site]["mean"] > max(r[1] for r in new_rows)
    assert "Positions measured apart" in _tables(new)


def test_base_vs_perturbed_copy_has_no_apart_artifact(
    tiny_tokenizer: Any, tiny_model_factory: Callable[..., torch.nn.Module]
) -> None:
    """Without a planted sink change, the sink is not singled out by orders of magnitude."""
    base = tiny_model_factory("llama")
    pair = ModelPair.from_models(base, copy.deepcopy(base), tiny_tokenizer)
    site = "blocks.1.hook_resid_post"
    res = scan.run(pair, PROMPTS, scan.ScanSettings(sites=(site,)), progress=False)
    assert res.apart["sink"][site]["mean"] == 0.0
