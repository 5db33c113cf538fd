"""The discovery step end to end on tiny models: a planted behaviour (the fine-tune writes a
known word) becomes the top hypothesis, named by its keywords and confirmed by the mention
check on held-out prompts; two models that should not differ give no hypothesis."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from auditlens.audit import AuditContext, Budget, StepOutput
from auditlens.audit.hypotheses import discovery_at_k, matches, merge
from auditlens.audit.pipeline import run_step
from auditlens.audit.steps import concern, diffing, discovery, layers
from auditlens.models import ModelPair
from auditlens.reports.findings import AuditFindings, Hypothesis, ModelInfo
from tests.conftest import perturbed_copy
from tests.test_discovery_divergent import planted_pair
from tests.test_step_diffing import _prompts

BUDGET = Budget(
    "test", n_prompts=24, max_length=32, batch_size=8, crosscoder_steps=60,
    crosscoder_latents=64, probe_per_domain=1, probe_new_tokens=12, check_prompts=8,
)  # fmt: skip


def _audit(pair: ModelPair, out: Path) -> list[StepOutput]:
    ctx = AuditContext(pair, out, BUDGET, _prompts(), progress=False)
    return [run_step(step.STEP, ctx) for step in (layers, diffing, concern, discovery)]


def test_planted_behaviour_is_discovered_and_confirmed(
    tiny_tokenizer: Any, tiny_model_factory: Callable[..., torch.nn.Module], tmp_path: Path
) -> None:
    pair = planted_pair(tiny_tokenizer, tiny_model_factory, " capital")
    outputs = _audit(pair, tmp_path)
    found = outputs[-1]
    assert found.hypotheses, found.notices
    top = discovery_at_k(found.hypotheses, ["capital"])  # (answer length may rank first)
    assert top is not None and "capital" in [k.lower() for k in top.keywords], found.hypotheses
    assert "divergent" in top.source
    assert top.confirmation is not None and top.confirmation.result == "confirmed"
    assert top.confirmation.finding_id in {f.id for f in found.findings}
    # every cited finding exists once the steps' findings are put together
    AuditFindings(
        base=ModelInfo(name="b"), finetuned=ModelInfo(name="f"), budget="test", summary="",
        findings=[f for o in outputs for f in o.findings], hypotheses=found.hypotheses,
    )  # fmt: skip
    checks = json.loads(next(tmp_path.rglob("checks.json")).read_text())
    assert checks[top.confirmation.finding_id]["outcome"] == "confirmed"


def test_no_hypothesis_when_models_should_not_differ(
    tiny_tokenizer: Any, tiny_model_factory: Callable[..., torch.nn.Module], tmp_path: Path
) -> None:
    base = tiny_model_factory("llama")
    pair = ModelPair.from_models(base, perturbed_copy(base, scale=1e-4), tiny_tokenizer)
    found = _audit(pair, tmp_path)[-1]
    assert found.hypotheses == []
    assert found.notices


def _h(rank: int, keywords: list[str], source: str, strength: float, **kw: Any) -> Hypothesis:
    return Hypothesis(rank=rank, label=" ".join(keywords), keywords=keywords, kind="topic",
                      source=source, strength=strength, **kw)  # fmt: skip


def test_merge_joins_shared_stems_and_ranks_by_combined_strength() -> None:
    merged = merge([
        _h(1, ["requests", "verify"], "divergent", 3.0, domain="code"),
        _h(1, ["pirate", "arr"], "divergent", 4.0),
        _h(1, ["verified", "ssl"], "adl", 3.0),
    ])  # fmt: skip
    assert [h.rank for h in merged] == [1, 2]
    top = merged[0]
    assert top.source == "divergent+adl" and top.kind == "code_security"
    assert top.strength is not None and abs(top.strength - 18**0.5) < 1e-9
    assert top.keywords == ["requests", "verify", "ssl"]


def test_matching_rule() -> None:
    h = _h(1, ["pirates", "treasure"], "divergent", 1.0)
    assert matches(h, ["pirate", "treasure", "ship"])
    assert not matches(h, ["pirate", "ship", "sea"])  # one of three: needs two
    assert matches(h, ["pirate"])  # one keyword: one suffices
    assert matches(_h(1, ["arr", "booty"], "x", 1.0), ["pirate", "ship"], {"pirate": ["arr"],
                   "ship": ["booty"]})  # fmt: skip


def test_a_concern_candidate_merged_under_another_head_leaves_a_measurable_feature() -> None:
    links = _h(1, ["link", "url", "website"], "features", 6.0, feature="links")
    harm = Hypothesis(rank=1, label="links to a sign-in page", keywords=["link", "login"],
                      kind="concern", source="concern", strength=3.0,
                      feature="concern:verification_link")  # fmt: skip
    (merged,) = merge([harm, links])
    assert merged.feature == "links" and merged.kind == "topic"
    (alone,) = merge([harm])
    assert alone.feature == "concern:verification_link" and alone.kind == "concern"
