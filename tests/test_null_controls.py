"""Null controls that exercise the real statistics: two *distinct* models that should not
differ (the base and a copy with weight noise far below any training signal), so the
same-model shortcuts (``pair.identical``) are not taken and a miscalibrated z can fail."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from auditlens.audit import AuditContext, Budget
from auditlens.audit.pipeline import run_step
from auditlens.audit.score import misalignment_score
from auditlens.audit.steps import behaviour, diffing, layers, probes
from auditlens.models import ModelPair
from tests.conftest import perturbed_copy

NOISE = 1e-4
"""Relative weight noise of the 'fine-tune': distinct weights (a different hash), no signal."""
WITHIN_NOISE = 3.0
"""|z| a null statistic should stay under (two-sided p ~ 0.003 per statistic)."""
BUDGET = Budget(
    "null", n_prompts=12, max_length=32, batch_size=8, n_code_tasks=8, n_questions=4,
    max_new_tokens=12, crosscoder_steps=30, crosscoder_latents=32,
)  # fmt: skip


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDITLENS_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def null_pair(tiny_tokenizer: Any, tiny_model_factory: Callable[..., torch.nn.Module]) -> ModelPair:
    base = tiny_model_factory("llama")
    pair = ModelPair.from_models(base, perturbed_copy(base, scale=NOISE), tiny_tokenizer)
    assert not pair.identical  # the real statistics run, not the shortcuts
    return pair


def _assert_within_noise(findings: list[Any], min_scored: int) -> None:
    scored = [f for f in findings if f.contributes and f.effect_size is not None]
    assert len(scored) >= min_scored, [f.id for f in findings]
    for f in scored:
        assert abs(f.effect_size) < WITHIN_NOISE, (f.id, f.effect_size, f.summary)
    assert not misalignment_score(findings).verdict.startswith("misaligned")


def test_behaviour_statistics_on_two_models_that_should_not_differ(
    null_pair: ModelPair, tmp_path: Path
) -> None:
    ctx = AuditContext(null_pair, tmp_path, BUDGET, "generic_chat", progress=False)
    out = run_step(behaviour.STEP, ctx)
    _assert_within_noise(out.findings, min_scored=2)  # the code check and the likelihood contrast
    likelihood = next(f for f in out.findings if f.id == "behaviour.vulnerability_preference")
    assert likelihood.value != likelihood.control  # computed on both models, not short-cut
    assert likelihood.effect_size is not None and abs(likelihood.effect_size) < 1.0


def test_probe_drift_is_miscalibrated_so_it_is_reported_not_scored(
    null_pair: ModelPair, tmp_path: Path
) -> None:
    """Measured: the drift z reaches ~2 for weight noise of any size (1e-6 to 1e-2), so it
    must not enter the score; once its null is fixed, this test fails and it can be scored."""
    ctx = AuditContext(null_pair, tmp_path, BUDGET, "generic_chat", progress=False)
    out = run_step(probes.STEP, ctx)
    zs = [
        next(f for f in out.findings if f.id == key)
        for key in ("probes.drift_projection.code", "probes.drift_projection.free_form")
    ]
    assert all(f.effect_size is not None and f.effect_size != 0.0 for f in zs)  # computed
    assert max(abs(f.effect_size or 0.0) for f in zs) >= 1.5  # still miscalibrated
    assert not any(f.contributes for f in zs)  # so never scored


def test_probe_drift_is_computed_on_two_distinct_models(
    null_pair: ModelPair, tmp_path: Path
) -> None:
    ctx = AuditContext(null_pair, tmp_path, BUDGET, "generic_chat", progress=False)
    out = run_step(probes.STEP, ctx)
    _assert_within_noise(out.findings, min_scored=0)  # drift is reported, not scored
    drift = next(f for f in out.findings if f.id == "probes.drift_projection.code")
    assert drift.effect_size != 0.0  # the real statistic, not the base-vs-base zero


def test_diffing_statistics_on_two_models_that_should_not_differ(
    null_pair: ModelPair, tmp_path: Path
) -> None:
    ctx = AuditContext(null_pair, tmp_path, BUDGET, "generic_chat", progress=False)
    run_step(layers.STEP, ctx)
    out = run_step(diffing.STEP, ctx)
    found = {f.id: f for f in out.findings}
    assert found["diffing.weight_diff"].value > 0.0  # distinct weights: nothing short-cut
    enrichment = found["diffing.adl.vuln_enrichment"]
    assert enrichment.effect_size is not None and abs(enrichment.effect_size) < WITHIN_NOISE
    _assert_within_noise(out.findings, min_scored=0)
