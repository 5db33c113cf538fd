"""ADL: a planted constant difference is recovered, read through the logit lens and steers."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from auditlens.diffing import adl
from auditlens.diffing.adl import ADLConfig, ADLResult
from auditlens.diffing.synthetic import plant_feature
from auditlens.hooks import add_vector
from auditlens.models import ModelPair
from auditlens.steering import SteeringVector

TOKEN = 100


@pytest.fixture
def planted_pair(tiny_model_factory: Callable[..., Any], tiny_tokenizer: Any) -> ModelPair:
    base = tiny_model_factory("llama")
    ft = copy.deepcopy(base)
    row = base.get_output_embeddings().weight[TOKEN].detach()
    plant_feature(ft, 1, row / row.norm(), 4.0)
    return ModelPair.from_models(base, ft, tiny_tokenizer)


def _cfg(**kw: Any) -> ADLConfig:
    return ADLConfig(**{"n_held": 4, "n_random": 8, "batch_size": 8, "causal_layer": 1, **kw})


def test_adl_recovers_planted_vector_and_steers(
    planted_pair: ModelPair, prompts: list[str]
) -> None:
    res = adl.run(planted_pair, prompts, _cfg(), progress=False)
    row = planted_pair.base.hf.get_output_embeddings().weight[TOKEN].detach()
    planted = 4.0 * row / row.norm()
    torch.testing.assert_close(res.vector(1), planted, atol=1e-4, rtol=1e-4)
    assert res.layers == [0, 1, 2]
    assert res.norms()[0] == pytest.approx(0.0, abs=1e-5)  # before the plant: no difference
    assert sum(res.tokens_by_position) == res.provenance["n_tokens"] > 0
    want = planted_pair.tokenizer.decode([TOKEN])
    assert res.lens["1"]["finetuned"]["promoted"][0][0] == want
    assert res.lens["1"]["base"]["promoted"][0][0] == want
    check = res.causal
    assert check is not None
    assert check.kl_unsteered > 1e-3
    assert check.kl_adl == pytest.approx(0.0, abs=1e-5)  # steering the base makes it the ft
    assert all(k > check.kl_adl for k in check.kl_random)
    assert check.p_value == pytest.approx(1 / 9)
    assert check.z_score > 3
    assert res.statistics()["kl_reduction"] == pytest.approx(check.kl_unsteered, abs=1e-5)


def test_adl_base_vs_base_is_zero(
    tiny_pair: ModelPair, tiny_tokenizer: Any, prompts: list[str]
) -> None:
    null = ModelPair.from_models(tiny_pair.base.module, None, tiny_tokenizer)
    res = adl.run(null, prompts, _cfg(causal=False), progress=False)
    assert torch.count_nonzero(res.mean_diff) == 0
    assert res.causal is None


def test_steering_vector_export_and_roundtrips(
    tmp_path: Path, planted_pair: ModelPair, prompts: list[str]
) -> None:
    res = adl.run(planted_pair, prompts, _cfg(n_random=2), progress=False)
    sv = res.steering_vector()
    assert isinstance(sv, SteeringVector)
    assert sv.site == "blocks.1.hook_resid_post" and sv.vector.shape == (32,)
    assert sv.norm == pytest.approx(4.0, rel=1e-4)
    assert sv.provenance["method"] == "adl" and sv.kind == "adl"
    sv.save(tmp_path / "sv")
    back = SteeringVector.load(tmp_path / "sv")
    torch.testing.assert_close(back.vector, sv.vector)
    assert back.site == sv.site and back.provenance == sv.provenance
    res.save(tmp_path / "adl")
    again = ADLResult.load(tmp_path / "adl")
    torch.testing.assert_close(again.mean_diff, res.mean_diff)
    assert again.to_json() == res.to_json()


def test_add_vector_hook_is_removed_even_on_error(planted_pair: ModelPair) -> None:
    model = planted_pair.base.hf
    ids = torch.tensor([[5, 6, 7]])
    before = model(input_ids=ids).logits
    v = torch.ones(32)
    with add_vector(model, planted_pair.arch, "blocks.0.hook_resid_pre", v):
        steered = model(input_ids=ids).logits
    assert not torch.allclose(before, steered)
    with (
        pytest.raises(RuntimeError),
        add_vector(model, planted_pair.arch, "blocks.2.hook_mlp_out", v),
    ):
        raise RuntimeError("boom")
    torch.testing.assert_close(model(input_ids=ids).logits, before)
