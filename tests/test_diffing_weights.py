"""Weight diff: full fine-tunes, LoRA adapters (merged delta), base-vs-base zeros, save/load."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from auditlens.diffing import weights
from auditlens.diffing.weights import (
    WeightDiffResult,
    lora_delta_svdvals,
    spectrum_stats,
    weight_diff_modules,
)
from auditlens.models import ModelPair, load_pair


def test_spectrum_stats_hand_computed() -> None:
    erank, r99 = spectrum_stats(torch.tensor([1.0, 1.0, 0.0]))
    assert erank == pytest.approx(2.0)
    assert r99 == 2
    erank, r99 = spectrum_stats(torch.tensor([10.0, 0.1]))
    assert 1.0 < erank < 1.1
    assert r99 == 1
    assert spectrum_stats(torch.zeros(4)) == (0.0, 0)


def test_lora_svdvals_match_dense() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 40, generator=gen), torch.randn(30, 4, generator=gen)
    want = torch.linalg.svdvals(b @ a * 0.5)[:4]
    torch.testing.assert_close(lora_delta_svdvals(a, b, 0.5), want, rtol=1e-4, atol=1e-4)


def test_full_diff_finds_the_changed_module(tiny_model_factory: Callable[..., Any]) -> None:
    base = tiny_model_factory("llama")
    ft = copy.deepcopy(base)
    with torch.no_grad():
        w = ft.model.layers[1].mlp.down_proj.weight
        u, v = torch.randn(w.shape[0], 1), torch.randn(1, w.shape[1])
        w.add_(0.5 * u @ v)  # a rank-1 change
    res = weight_diff_modules(base, ft, progress=False)
    assert res.mode == "full"
    changed = [r for r in res.rows if r.delta_norm > 0]
    assert [r.module for r in changed] == ["model.layers.1.mlp.down_proj"]
    row = changed[0]
    assert row.layer == 1 and row.rank_99 == 1
    assert row.effective_rank == pytest.approx(1.0, abs=1e-3)
    want = float((0.5 * u @ v).norm() / base.model.layers[1].mlp.down_proj.weight.detach().norm())
    assert row.rel_frobenius == pytest.approx(want, rel=1e-4)
    layer1 = next(r for r in res.by_layer() if r["layer"] == 1)
    assert layer1["top_module"] == row.module and layer1["n_changed"] == 1


def test_base_vs_base_is_zero(tiny_pair: ModelPair, tiny_tokenizer: Any) -> None:
    null = ModelPair.from_models(tiny_pair.base.module, None, tiny_tokenizer)
    res = weights.run(null, progress=False)
    assert res.mode == "identical"
    assert all(r.delta_norm == 0 and r.rel_frobenius == 0 for r in res.rows)
    assert res.statistics()["max_rel_frobenius"] == 0.0
    full = weights.run(tiny_pair, progress=False)
    assert full.statistics()["max_rel_frobenius"] > 0
    assert full.control["base_vs_base"]["max_rel_frobenius"] == 0.0


def _lora_pair(tmp_path: Path, model: Any, tokenizer: Any) -> tuple[ModelPair, Any]:
    from peft import LoraConfig, get_peft_model

    base_dir, adapter_dir = tmp_path / "base", tmp_path / "adapter"
    model.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"], lora_dropout=0.0)
    peft_model = get_peft_model(copy.deepcopy(model), cfg)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    peft_model.save_pretrained(adapter_dir)
    pair = load_pair(str(base_dir), adapter=str(adapter_dir), device="cpu")
    return pair, peft_model


def test_lora_diff_equals_merged_full_diff(
    tmp_path: Path, tiny_model_factory: Callable[..., Any], tiny_tokenizer: Any
) -> None:
    base = tiny_model_factory("llama")
    pair, peft_model = _lora_pair(tmp_path, base, tiny_tokenizer)
    lora = weights.run(pair, progress=False)
    assert lora.mode == "lora"
    merged = copy.deepcopy(peft_model).merge_and_unload()
    full = weight_diff_modules(base, merged, progress=False)
    by_name = {r.module: r for r in full.rows}
    changed = [r for r in lora.rows if r.delta_norm > 0]
    assert {r.module.rsplit(".", 1)[-1] for r in changed} == {"q_proj", "down_proj"}
    assert len(changed) == 2 * 3
    for r in lora.rows:
        ref = by_name[r.module]
        assert r.kind == ("lora" if r.delta_norm > 0 else "unchanged")
        assert r.rel_frobenius == pytest.approx(ref.rel_frobenius, rel=1e-3, abs=1e-7)
        assert r.rank_99 <= 4
        n = min(len(r.top_singular_values), 4)
        torch.testing.assert_close(
            torch.tensor(r.top_singular_values[:n]),
            torch.tensor(ref.top_singular_values[:n]),
            rtol=1e-3,
            atol=1e-5,
        )
    # the same pair's base-vs-base control: the adapter switched off on both sides
    assert lora.control["base_vs_base"]["total_rel_frobenius"] == 0.0


def test_weight_diff_save_load_roundtrip(tmp_path: Path, tiny_pair: ModelPair) -> None:
    res = weights.run(tiny_pair, progress=False)
    res.save(tmp_path / "wd")
    back = WeightDiffResult.load(tmp_path / "wd")
    assert back.rows == res.rows
    assert back.mode == res.mode and back.control == res.control
    assert set(back.spectra) == set(res.spectra)
    for k in res.spectra:
        torch.testing.assert_close(back.spectra[k], res.spectra[k])
