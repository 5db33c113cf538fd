"""Null controls: base-vs-base and benign pairs give each statistic's noise floor."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

from auditlens.diffing import adl, weights
from auditlens.diffing.adl import ADLConfig
from auditlens.diffing.controls import base_vs_base, null_control
from auditlens.diffing.synthetic import plant_feature
from auditlens.errors import AuditlensError
from auditlens.models import ModelPair


def test_base_vs_base_pair(tiny_pair: ModelPair) -> None:
    null = base_vs_base(tiny_pair)
    assert null.identical and not tiny_pair.identical
    assert null.base.module is tiny_pair.base.module is null.finetuned.module
    assert null.finetuned.name == "finetuned"


def test_null_control_gives_floors_and_attaches(
    tiny_model_factory: Callable[..., Any], tiny_tokenizer: Any, prompts: list[str]
) -> None:
    base = tiny_model_factory("llama")
    ft = copy.deepcopy(base)
    plant_feature(ft, 1, torch.ones(32) / 32**0.5, 4.0)
    pair = ModelPair.from_models(base, ft, tiny_tokenizer)
    nudged = copy.deepcopy(base)
    with torch.no_grad():
        for p in nudged.parameters():
            p.mul_(1.01)
    benign = ModelPair.from_models(base, nudged, tiny_tokenizer)
    cfg = ADLConfig(layers=(1,), causal=False, causal_layer=1)

    def pipeline(p: ModelPair) -> Any:
        return adl.run(p, prompts, cfg, progress=False)

    result = pipeline(pair)
    control = null_control(pipeline, pair, benign={"perturbed": benign}, attach_to=result)
    assert set(control.statistics) == {"base_vs_base", "benign:perturbed"}
    assert control.statistics["base_vs_base"]["diff_norm"] == 0.0
    assert (
        0 < control.statistics["benign:perturbed"]["diff_norm"] < result.statistics()["diff_norm"]
    )
    assert result.control["base_vs_base"] == control.statistics["base_vs_base"]
    cmp = control.compare(result)
    assert cmp["diff_norm"]["ratio_to_floor"] is not None and cmp["diff_norm"]["ratio_to_floor"] > 1
    assert result.to_json()["control"]["benign:perturbed"]["diff_norm"] > 0


def test_null_control_records_unavailable_controls(tiny_pair: ModelPair) -> None:
    def pipeline(p: ModelPair) -> Any:
        if p.identical:
            raise AuditlensError("nothing to compare")
        return weights.run(p, progress=False)

    control = null_control(pipeline, tiny_pair)
    assert control.statistics == {}
    assert "base_vs_base: control not available (nothing to compare)" in control.notices
    assert control.floor("max_rel_frobenius") is None
