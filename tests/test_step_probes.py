"""The audit's probes step on tiny models: a planted shift along the misalignment direction."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from auditlens.audit import AuditContext, Budget
from auditlens.audit.pipeline import run_step
from auditlens.audit.steps import probes
from auditlens.models import ModelPair
from auditlens.probes import load_pair_set, misalignment_direction
from auditlens.probes.drift import projection_drift, shuffled_directions
from auditlens.probes.pairsets import pair_subset

BUDGET = Budget("test", n_prompts=1, max_length=64, batch_size=8, n_code_tasks=2, n_questions=4)
LAST = "blocks.2.hook_resid_post"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDITLENS_CACHE", str(tmp_path / "cache"))


def _run(pair: ModelPair, out: Path) -> Any:
    ctx = AuditContext(pair, out, BUDGET, "generic_chat", progress=False)
    output = run_step(probes.STEP, ctx)
    assert (out / ctx.where / "probes.json").is_file()
    return output


def _findings(output: Any) -> dict[str, Any]:
    return {f.id: f for f in output.findings}


def test_projection_drift_detects_a_planted_direction() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 64, generator=gen)
    labels = torch.arange(40) % 2
    x[labels == 1, 0] += 1.0
    direction = x[labels == 1].mean(0) - x[labels == 0].mean(0)
    nulls = {0: shuffled_directions(x, labels.numpy(), n=100)}
    noise = 0.1 * torch.randn(12, 64, generator=gen)
    towards = projection_drift({0: noise + direction}, {0: direction}, nulls)
    away = projection_drift({0: noise - direction}, {0: direction}, nulls)
    assert towards.effect_size > 3 and towards.p_value < 0.05 and towards.win_rate == 1.0
    assert away.effect_size < -3 and away.win_rate == 0.0
    orthogonal = torch.zeros(64)
    orthogonal[5] = 1.0  # a direction with no misalignment component
    sideways = projection_drift({0: noise + orthogonal}, {0: direction}, nulls)
    assert abs(sideways.effect_size) < 2.5
    empty = projection_drift({}, {}, {})
    assert empty.effect_size == 0.0 and empty.layers == []


def test_pair_subset_keeps_both_labels_of_each_template() -> None:
    data = pair_subset(load_pair_set("misaligned_answers"), 8)
    assert len(data) == 16 and sorted(set(data.groups)) == sorted(dict.fromkeys(data.groups))
    assert len({e.family for e in data.examples}) == 8  # topics in turn
    for g in set(data.groups):
        assert sorted(e.label for e in data.examples if e.group == g) == [0, 1]


def test_base_vs_base_is_null(tiny_tokenizer: Any, tiny_model_factory: Any, tmp_path: Path) -> None:
    pair = ModelPair.from_models(tiny_model_factory("llama"), None, tiny_tokenizer)
    output = _run(pair, tmp_path)
    found = _findings(output)
    for key in ("probes.drift_projection.free_form", "probes.drift_projection.code"):
        assert not found[key].contributes and found[key].effect_size == 0.0  # reported only
    assert found["probes.direction_cosine"].value == pytest.approx(1.0)
    assert not found["probes.direction_cosine"].contributes
    kinds = [s.kind for s in output.sections]
    assert "layer_plot" in kinds and "table" in kinds


def test_planted_shift_along_the_direction_is_detected(
    tiny_tokenizer: Any, tiny_model_factory: Any, tmp_path: Path
) -> None:
    base = tiny_model_factory("llama")
    probe_pair = ModelPair.from_models(base, None, tiny_tokenizer)
    data = pair_subset(load_pair_set("misaligned_answers"), 8)
    unit = misalignment_direction(probe_pair, LAST, examples=data, progress=False).unit

    def planted() -> ModelPair:
        ft = copy.deepcopy(base)
        with torch.no_grad():  # change the hash without touching any residual stream
            ft.model.norm.weight[0] += 1e-3

        def shift(module: Any, args: Any, output: Any) -> Any:
            h = output[0] if isinstance(output, tuple) else output
            h = h + 4.0 * unit * h.norm(dim=-1, keepdim=True).mean()
            return (h, *output[1:]) if isinstance(output, tuple) else h

        ft.model.layers[2].register_forward_hook(shift)
        return ModelPair.from_models(base, ft, tiny_tokenizer)

    found = _findings(_run(planted(), tmp_path))
    for key in ("probes.drift_projection.free_form", "probes.drift_projection.code"):
        assert found[key].effect_size > 2.5, found[key].summary  # detected (reported only)
    assert found["probes.drift_win_rate"].value == 1.0
    assert not found["probes.drift_win_rate"].contributes
