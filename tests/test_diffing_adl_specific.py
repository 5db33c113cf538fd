"""The ADL read against benign fine-tunes: a direction every fine-tune shares is removed, a
planted fine-tune-specific one is read and becomes the hypothesis; base vs base reads nothing."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from auditlens.audit.adl_reference import AdlReference, load_adl_reference
from auditlens.diffing import adl, adl_specific, patchscope
from auditlens.diffing.adl import ADLConfig
from auditlens.diffing.adl_specific import SpecificSettings, project_out
from auditlens.diffing.synthetic import plant_feature
from auditlens.errors import AuditlensError
from auditlens.models import ModelPair

LAYER = 2  # the last layer of the tiny model: the one the hypothesis reads
SPECIFIC_IDS = [284, 265]  # " capital", " the": whole words in the tiny tokenizer
SHARED_IDS = [298, 294, 293]  # "WHER", "SEL", "ROM": word fragments


def _decoded(tokenizer: Any, ids: list[int]) -> list[str]:
    return [tokenizer.decode([i]) for i in ids]


def _direction(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    """The unit direction whose unembedding best raises ``ids`` alone (least squares)."""
    weight = model.get_output_embeddings().weight.detach().double()
    want = torch.zeros(weight.shape[0], dtype=torch.float64)
    want[ids] = 1.0
    v = torch.linalg.lstsq(weight, want).solution.float()
    return v / v.norm()


def _pair(base: torch.nn.Module, tokenizer: Any, plants: list[tuple[torch.Tensor, float]]) -> Any:
    ft = copy.deepcopy(base)
    for direction, scale in plants:
        plant_feature(ft, LAYER, direction, scale)
    return ModelPair.from_models(base, ft, tokenizer)


def _cfg() -> ADLConfig:
    return ADLConfig(n_held=4, n_random=8, batch_size=8, causal_layer=LAYER)


@pytest.fixture
def setting(tiny_model_factory: Callable[..., Any], tiny_tokenizer: Any) -> dict[str, Any]:
    base = tiny_model_factory("llama")
    assert _decoded(tiny_tokenizer, SPECIFIC_IDS) == [" capital", " the"]
    assert _decoded(tiny_tokenizer, SHARED_IDS) == ["WHER", "SEL", "ROM"]
    shared = _direction(base, SHARED_IDS)
    specific = _direction(base, SPECIFIC_IDS)
    return {"base": base, "shared": shared, "specific": specific, "tok": tiny_tokenizer}


SPECIFIC = {"capital", "the"}
SHARED = {"WHER", "SEL", "ROM"}


def _words(tokens: list[tuple[str, float]], n: int = 3) -> set[str]:
    return {t.strip() for t, _ in tokens[:n]}


def test_the_shared_direction_is_removed_and_the_planted_one_read(
    setting: dict[str, Any], prompts: list[str]
) -> None:
    base, tok = setting["base"], setting["tok"]
    shared, specific = setting["shared"], setting["specific"]
    target = _pair(base, tok, [(shared, 12.0), (specific, 4.0)])
    result = adl.run(target, prompts, _cfg(), progress=False)
    refs = []
    for scale in (9.0, 15.0):
        benign = _pair(base, tok, [(shared, scale)])
        refs.append(adl.run(benign, prompts, ADLConfig(causal=False, n_held=0), progress=False))
    common = _words(refs[0].lens[str(LAYER)]["finetuned"]["promoted"])  # what benign ones read
    assert common & SHARED and not common & SPECIFIC
    # raw: the shared change dominates the target's reading
    assert _words(result.lens[str(LAYER)]["finetuned"]["promoted"], 2) <= common
    reference = {layer: torch.stack([r.mean_diff[layer] for r in refs]) for layer in range(3)}
    reading = adl_specific.run(result, target, reference, reference="two benign pairs")
    assert reading.read_layers() == [LAYER]
    assert _words(reading.lens[str(LAYER)]["finetuned"]["promoted"], 2) == SPECIFIC
    assert reading.n_directions[str(LAYER)] == 1  # both benign vectors span one direction
    assert set(reading.patchscope) == {"2"}  # no difference before the plant: nothing read
    assert "capital" in patchscope.words(reading.patchscope[str(LAYER)])
    assert 0.1 < reading.kept[str(LAYER)] < 0.6  # most of δ was the shared change
    ev = adl_specific.evidence(reading, "diffing")
    (hyp,) = ev.hypotheses
    assert set(hyp.keywords) >= SPECIFIC and not common & set(hyp.keywords)
    assert hyp.source == "adl" and hyp.strength is not None and hyp.strength >= 2.0
    assert ev.sections[0].rows[-1][0] == LAYER
    # fragments count only when asked to: then the removal is what keeps the shared ones out
    every = SpecificSettings(whole_words=False)
    kept = adl_specific.evidence(adl_specific.run(result, target, reference, every)).hypotheses
    assert not common & set(kept[0].keywords)
    # with no reference directions the reading is the raw one, shared words first
    none = {layer: torch.zeros(1, target.d_model) for layer in range(3)}
    raw = adl_specific.run(result, target, none, every)
    assert raw.kept[str(LAYER)] == pytest.approx(1.0) and raw.n_directions[str(LAYER)] == 0
    assert common & set(adl_specific.evidence(raw).hypotheses[0].keywords[:2])
    # whole words only (the default): the same raw reading's fragments are not words
    raw_words = adl_specific.evidence(adl_specific.run(result, target, none)).hypotheses
    assert not SHARED & {k for h in raw_words for k in h.keywords}


def test_base_vs_base_reads_nothing(setting: dict[str, Any], prompts: list[str]) -> None:
    pair = ModelPair.from_models(setting["base"], None, setting["tok"])
    result = adl.run(pair, prompts, _cfg(), progress=False)
    reference = {layer: setting["shared"][None] for layer in range(3)}
    reading = adl_specific.run(result, pair, reference)
    assert reading.kept[str(LAYER)] == 0.0 and reading.patchscope == {}
    assert reading.lens[str(LAYER)]["finetuned"]["promoted"] == []
    assert adl_specific.evidence(reading).hypotheses == []


def test_the_hypothesis_needs_the_steering_check(
    setting: dict[str, Any], prompts: list[str]
) -> None:
    target = _pair(setting["base"], setting["tok"], [(setting["specific"], 4.0)])
    result = adl.run(target, prompts, _cfg(), progress=False)
    reference = {layer: setting["shared"][None] for layer in range(3)}
    passed = adl_specific.run(result, target, reference)
    assert adl_specific.evidence(passed).hypotheses
    strict = adl_specific.run(result, target, reference, SpecificSettings(min_z=1e9))
    assert adl_specific.evidence(strict).hypotheses == []
    shallow = adl_specific.run(result, target, reference, SpecificSettings(min_depth=1.0))
    assert shallow.read_layers() == [LAYER]
    with pytest.raises(AuditlensError, match="none of the ADL's layers"):
        adl_specific.run(result, target, {7: setting["shared"][None]})
    with pytest.raises(AuditlensError, match="another model"):
        adl_specific.run(result, target, {LAYER: torch.ones(1, 5)})


def test_project_out_removes_the_span_only() -> None:
    gen = torch.Generator().manual_seed(0)
    dirs = torch.randn(3, 16, generator=gen)
    dirs = torch.cat([dirs, dirs[:1] * 2.0, torch.zeros(1, 16)])  # dependent and zero rows
    v = torch.randn(4, 16, generator=gen)
    out = project_out(v, dirs)
    assert torch.allclose(out @ dirs.T, torch.zeros(4, 5), atol=1e-5)
    inside = dirs[:3].T @ torch.tensor([1.0, -2.0, 0.5])
    assert project_out(inside, dirs).norm() < 1e-4
    assert torch.equal(project_out(v, torch.zeros(2, 16)), v)


def test_reference_file_round_trip_and_leave_out(tmp_path: Path) -> None:
    vectors = {"a": torch.randn(3, 8), "b": torch.randn(3, 8)}
    ref = AdlReference("basehash", vectors, {"a": "sha-a", "b": None}, {"prompts": "p"})
    path = ref.save(tmp_path / "ref.safetensors")
    back = load_adl_reference(path)
    assert back.base_sha256 == "basehash" and back.settings == {"prompts": "p"}
    assert torch.equal(back.vectors["a"], vectors["a"])
    assert back.member("sha-a") == "a" and back.member(None) is None
    assert back.member("other") is None
    assert torch.equal(back.directions(1, leave_out="a"), vectors["b"][1:2])
    assert back.directions(2).shape == (2, 8)
    with pytest.raises(AuditlensError, match="not in the ADL reference"):
        back.directions(5)
    one = AdlReference("h", {"a": torch.randn(3, 8)}, {"a": "s"}, {})
    with pytest.raises(AuditlensError, match="no pair besides"):
        one.directions(0, leave_out="a")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(AuditlensError, match="cannot read ADL reference"):
        load_adl_reference(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(AuditlensError, match="not an auditlens ADL reference"):
        load_adl_reference(tmp_path / "other.safetensors")
