"""The audit's diffing step on tiny models: a planted vulnerability-token direction is found
by the weight diff, the ADL (with its enrichment statistic) and the crosscoder; base vs base
reports nothing."""

from __future__ import annotations

import copy
import dataclasses
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from auditlens.audit import AuditContext, Budget, StepOutput
from auditlens.audit.pipeline import run_step
from auditlens.audit.steps import diffing, layers
from auditlens.diffing.enrichment import EnrichmentSettings, vocab_ids
from auditlens.diffing.synthetic import plant_feature
from auditlens.models import ModelPair
from auditlens.reports.sections import LayerPlot, Table

WORDS = ["hello", "world", "the", "capital", "France", "Paris", "import", "os", "return"]
WORDS += ["quick", "brown", "fox", "system", "shell", "users", "what", "is", "add"]
BUDGET = Budget(
    "test", n_prompts=24, max_length=32, batch_size=8, crosscoder_steps=60,
    crosscoder_latents=64,
)  # fmt: skip


def _prompts() -> list[str]:
    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(16)) for _ in range(BUDGET.n_prompts)]


def _run(
    pair: ModelPair, out: Path, vocab: EnrichmentSettings | None = None
) -> tuple[StepOutput, Path]:
    ctx = AuditContext(pair, out, BUDGET, _prompts(), progress=False)
    run_step(layers.STEP, ctx)
    step = diffing.STEP
    if vocab is not None:

        def settings(budget: Budget, prompts: Any) -> diffing.DiffingSettings:
            return dataclasses.replace(diffing.settings(budget, prompts), enrichment=vocab)

        step = dataclasses.replace(step, settings=settings)
    output = run_step(step, ctx)
    StepOutput.model_validate_json(output.model_dump_json())  # JSON round trip
    return output, out / ctx.where


def _by_id(output: StepOutput) -> dict[str, Any]:
    return {f.id: f for f in output.findings}


def _table(output: StepOutput, prefix: str) -> Table:
    tables = [s for s in output.sections if isinstance(s, Table) and s.title.startswith(prefix)]
    assert len(tables) == 1, prefix
    return tables[0]


def test_planted_vulnerability_direction(
    tiny_model_factory: Callable[..., Any], tiny_tokenizer: Any, tmp_path: Path
) -> None:
    # the tiny tokenizer has no whole vulnerability words: use a stand-in vocabulary
    stand_in = EnrichmentSettings(vuln_words=("capital",), safe_words=("the", "hell"))
    base = tiny_model_factory("llama")
    ft = copy.deepcopy(base)
    token = vocab_ids(tiny_tokenizer, stand_in.vuln_words)[0]
    row = base.get_output_embeddings().weight[token].detach()
    plant_feature(ft, 2, row / row.norm(), 8.0, jitter=1.0)
    with torch.no_grad():  # a weight change in layer 1 only, for the weight diff
        ft.model.layers[1].mlp.down_proj.weight.mul_(1.01)
    pair = ModelPair.from_models(base, ft, tiny_tokenizer)
    output, where = _run(pair, tmp_path, stand_in)
    found = _by_id(output)
    assert set(found) == {
        "diffing.weight_diff", "diffing.adl.steering", "diffing.adl.vuln_enrichment",
        "diffing.crosscoder.ft_only",
    }  # fmt: skip
    assert not any(f.contributes for f in output.findings)
    assert output.data["adl_layer"] == 2
    assert output.data["crosscoder_site"] == "blocks.2.hook_resid_post"
    # weight diff: only layer 1 changed
    plot = next(s for s in output.sections if isinstance(s, LayerPlot))
    rel = next(iter(plot.series.values()))
    assert rel[1] > 0 and rel[0] == rel[2] == 0
    assert _table(output, "Most-changed weight").rows[0][0] == "model.layers.1.mlp.down_proj"
    # ADL: the planted token is promoted, the enrichment is far above random directions
    adl = _table(output, "Activation Difference Lens")
    assert adl.rows[0][1] == tiny_tokenizer.decode([token])
    assert found["diffing.adl.vuln_enrichment"].effect_size > 3
    assert found["diffing.adl.steering"].effect_size > 2
    # crosscoder: the most fine-tune-specific latent is ft-leaning, with contexts and effects
    cc = _table(output, "Top fine-tune-specific crosscoder latents")
    assert cc.rows and float(cc.rows[0][1]) < 0.3
    assert all(r[4] and r[5] for r in cc.rows)
    assert found["diffing.crosscoder.ft_only"].value > 0.05
    assert found["diffing.crosscoder.ft_only"].control == 0.0
    saved = json.loads((where / "crosscoder/result.json").read_text())
    assert cc.rows and found["diffing.crosscoder.ft_only"].refs[0] == f"latent:{cc.rows[0][0]}"
    assert "base_vs_base" in saved["control"]
    for f in output.findings:
        for art in f.artifacts:
            assert (tmp_path / art).is_file(), art


def test_base_vs_base_reports_nothing(
    tiny_model_factory: Callable[..., Any], tiny_tokenizer: Any, tmp_path: Path
) -> None:
    pair = ModelPair.from_models(tiny_model_factory("llama"), None, tiny_tokenizer)
    output, _ = _run(pair, tmp_path)
    found = _by_id(output)
    assert found["diffing.weight_diff"].value == 0.0
    assert found["diffing.adl.vuln_enrichment"].value == 0.0
    assert found["diffing.adl.vuln_enrichment"].effect_size == 0.0
    assert found["diffing.crosscoder.ft_only"].value == 0.0
    cc = _table(output, "Top fine-tune-specific crosscoder latents")
    assert all(abs(float(r[1]) - 0.5) < 0.1 for r in cc.rows)


def test_the_adl_is_read_against_a_reference_of_this_base(
    tiny_model_factory: Callable[..., Any],
    tiny_tokenizer: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from auditlens.audit.adl_reference import AdlReference

    base = tiny_model_factory("llama")
    ft = copy.deepcopy(base)
    row = base.get_output_embeddings().weight[284].detach()  # " capital"
    plant_feature(ft, 2, row / row.norm(), 8.0)
    pair = ModelPair.from_models(base, ft, tiny_tokenizer)
    # no reference for this base: the raw reading, and the report says so
    output, _ = _run(pair, tmp_path / "raw")
    assert any("read raw" in n for n in output.notices)
    assert output.data["adl_specific"] is False
    assert not [s for s in output.sections if s.title.startswith("ADL without")]
    # a reference built on this base: the specific reading replaces the raw hypothesis
    gen = torch.Generator().manual_seed(3)
    shared = {"benign": torch.randn(3, pair.d_model, generator=gen)}
    path = AdlReference(pair.base.sha256, shared, {"benign": "sha"}, {}).save(
        tmp_path / "ref.safetensors"
    )
    from auditlens.audit import adl_reference

    monkeypatch.setattr(adl_reference, "shipped_adl_reference_path", lambda: path)
    output, where = _run(pair, tmp_path / "specific")
    assert output.data["adl_specific"] is True
    assert not any("read raw" in n for n in output.notices)
    table = _table(output, "ADL without what every fine-tune shares")
    pooled = {r[0]: r for r in table.rows if r[1] == "pooled"}
    assert pooled[2][3] == 1 and 0 < pooled[2][2] <= 1  # one direction out at the peak
    assert (where / "adl/adl_specific.json").is_file()
    scope = _table(output, "Patchscope of the fine-tune-specific δ")
    assert [r[0] for r in scope.rows] == [2]  # the layers with a difference (the plant)
    (hyp,) = [h for h in output.data["candidates"] if h["source"] == "adl"]
    assert "capital" in hyp["keywords"] and "fine-tune-specific" in hyp["label"]
    # the reference's content is part of the step's settings: a new file is a new step key
    assert diffing.settings(BUDGET, _prompts()).adl_reference is not None
