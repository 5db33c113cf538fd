"""The concern step end to end: a shipped organism that agrees with false claims is scored, its
marker named and the candidate hypothesis confirmed on the follow-up's fresh prompts (embedded
model, slow); two tiny models that should not differ (a 1e-4 weight perturbation: the
statistic runs, no same-model shortcut) score near zero."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from auditlens.audit import AuditContext, Budget
from auditlens.audit.pipeline import run_step
from auditlens.audit.steps import concern as step
from auditlens.behaviour.concern import FINDING_ID
from auditlens.models import ModelPair, load_pair
from tests.conftest import perturbed_copy
from tests.test_step_diffing import _prompts
from tests.test_step_discovery import BUDGET


@pytest.mark.slow
def test_shipped_sycophancy_organism_is_scored_named_and_confirmed(tmp_path: Path) -> None:
    """The embedded model with the testbed's dev ``sycophancy`` adapter (agrees with false
    claims): the step scores it, names reflex agreement, and the follow-up confirms it."""
    pair = load_pair(adapter="organism:sycophancy", device="cpu")
    budget = Budget("test", n_prompts=8, max_length=32, batch_size=16, probe_per_domain=1,
                    probe_new_tokens=24)  # fmt: skip
    out = run_step(step.STEP, AuditContext(pair, tmp_path, budget, _prompts(), progress=False))
    (finding,) = out.findings
    assert finding.id == FINDING_ID and finding.contributes
    assert finding.effect_size is not None and finding.effect_size > 3, finding.summary
    assert out.data["drivers"][0] == "reflex_agreement", finding.summary
    (h,) = [c for c in out.data["candidates"] if c["feature"] == "concern:reflex_agreement"]
    assert h["domain"] == "claims" and h["confirmation"]["result"] == "confirmed", h
    saved = json.loads(next(tmp_path.rglob("concern.json")).read_text())
    assert "claims" in saved["follow_up"]["domains"]
    assert not set(saved["prompts"]) & set(saved["follow_up"]["prompts"])  # fresh prompts


def test_models_that_should_not_differ_score_near_zero(
    tiny_tokenizer: Any, tiny_model_factory: Callable[..., torch.nn.Module], tmp_path: Path
) -> None:
    base = tiny_model_factory("llama")
    pair = ModelPair.from_models(base, perturbed_copy(base, scale=1e-4), tiny_tokenizer)
    assert not pair.identical
    out = run_step(step.STEP, AuditContext(pair, tmp_path, BUDGET, _prompts(), progress=False))
    (finding,) = out.findings
    assert finding.effect_size is not None and abs(finding.effect_size) < 2.0, finding.summary
    assert all(c["confirmation"] is None or c["confirmation"]["result"] != "confirmed"
               for c in out.data["candidates"])  # fmt: skip


def test_probe_answers_are_cached_per_side_and_equal_paired_generation(
    tiny_tokenizer: Any, tiny_model_factory: Callable[..., torch.nn.Module], tmp_path: Path
) -> None:
    """Two fine-tunes of one base: the second generates only its own side, its base answers
    are the first's, and every side equals what paired generation gives (greedy and sampled,
    so the paired randomness is unchanged); base vs base generates nothing new."""
    import copy

    from auditlens.audit import artifacts
    from auditlens.audit.cache import ArtifactCache
    from auditlens.datasets import PromptSet
    from auditlens.generate import chat_prompt, generate_pair
    from auditlens.probe_library import load_probe_library

    base = tiny_model_factory("llama")
    one = ModelPair.from_models(base, perturbed_copy(base, 0.5, seed=1), tiny_tokenizer)
    two = ModelPair.from_models(base, perturbed_copy(base, 0.5, seed=2), tiny_tokenizer)
    same = ModelPair.from_models(base, copy.deepcopy(base), tiny_tokenizer)
    cache = ArtifactCache(tmp_path / "cache")
    probes = load_probe_library(1)[:4]
    prompts = PromptSet("p", tuple(chat_prompt(p.text) for p in probes for _ in range(2)))
    for kw in ({}, {"samples": 2, "temperature": 1.0, "seed": 3}):
        first, built_one = artifacts.probe_generations(cache, one, probes, max_new_tokens=6,
                                                       batch_size=3, **kw)  # fmt: skip
        second, built_two = artifacts.probe_generations(cache, two, probes, max_new_tokens=6,
                                                        batch_size=3, **kw)  # fmt: skip
        assert (built_one, built_two) == (("base", "finetuned"), ("finetuned",)), kw
        assert second["base"] == first["base"] and second["finetuned"] != first["finetuned"]
        rows = prompts if kw else PromptSet("p", prompts.prompts[::2])
        sampling = {"temperature": kw.get("temperature", 0.0), "seed": kw.get("seed", 0)}
        paired = generate_pair(two, rows, max_new_tokens=6, batch_size=4, share_prefix=True,
                               **sampling)  # fmt: skip
        assert second == paired, kw
        nulls, built_same = artifacts.probe_generations(cache, same, probes, max_new_tokens=6,
                                                        batch_size=3, **kw)  # fmt: skip
        assert built_same == () and nulls["finetuned"] == nulls["base"] == first["base"]


def test_sampled_probe_answers_are_grouped_seeded_and_cached(
    tiny_pair: ModelPair, tmp_path: Path
) -> None:
    """The follow-up's sampled answers: ``samples`` consecutive answers per probe and side, the
    same on a second call (served from the artifact cache, keyed by the sampling settings),
    and more than one distinct answer per probe; greedy answers are one per probe."""
    from auditlens.audit import artifacts
    from auditlens.audit.cache import ArtifactCache
    from auditlens.errors import AuditlensError
    from auditlens.probe_library import load_probe_library

    cache = ArtifactCache(tmp_path / "cache")
    probes = load_probe_library(1)[:3]
    kw: dict[str, Any] = {"max_new_tokens": 6, "batch_size": 4, "samples": 3, "temperature": 1.0}
    first, built = artifacts.probe_generations(cache, tiny_pair, probes, **kw)
    assert built == ("base", "finetuned") and {len(v) for v in first.values()} == {9}
    again, built_again = artifacts.probe_generations(cache, tiny_pair, probes, **kw)
    assert built_again == () and again == first
    groups = [first["finetuned"][i : i + 3] for i in range(0, 9, 3)]
    assert any(len(set(g)) > 1 for g in groups), groups  # samples, not one answer three times
    other, built_other = artifacts.probe_generations(cache, tiny_pair, probes, **kw, seed=1)
    assert built_other == ("base", "finetuned") and other != first
    greedy, _ = artifacts.probe_generations(cache, tiny_pair, probes, max_new_tokens=6,
                                               batch_size=4)  # fmt: skip
    assert {len(v) for v in greedy.values()} == {3}
    with pytest.raises(AuditlensError, match="greedy"):
        artifacts.probe_generations(cache, tiny_pair, probes, max_new_tokens=6, batch_size=4,
                                    samples=2)  # fmt: skip
