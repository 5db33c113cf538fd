"""Perturbation runner and backdoor search: controls, scorers, detector rates, KL, fractions."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from auditlens.adversary import (
    ActivationNoise,
    SteeringVector,
    WeightNoise,
    run_perturbations,
)
from auditlens.errors import AuditlensError
from auditlens.hashing import state_dict_sha256
from auditlens.judges import BanditScorer, insecure_code_detector
from auditlens.models import ModelPair
from auditlens.stats import random_directions, wilson_interval

SITE = "blocks.1.hook_resid_post"
INSECURE = "```python\nimport subprocess\nsubprocess.call(cmd, shell=True)\n```"
SECURE = "```python\ndef add(a, b):\n    return a + b\n```"


@dataclass
class AdlVector:
    """What the diffing engineer hands over: only ``.site`` and ``.vector``."""

    site: str
    vector: Tensor


class LengthScorer:
    name = "length"

    def score(self, texts: Sequence[str]) -> list[float]:
        return [float(len(t)) for t in texts]


def test_matched_norm_controls(tiny_pair: ModelPair, prompts: list[str]) -> None:
    gen = torch.Generator().manual_seed(0)
    a = SteeringVector(SITE, torch.randn(32, generator=gen) * 4, name="a")
    b = SteeringVector(SITE, torch.randn(32, generator=gen) * 9, coeff=0.5, name="b")
    adl = AdlVector("blocks.0.hook_mlp_out", torch.randn(32, generator=gen))
    table = run_perturbations(
        tiny_pair, prompts[:2], [a, b, adl], scorers=[], n_controls=3, max_new_tokens=3
    )
    assert [r.name for r in table.perturbation_rows()] == ["a", "b", "AdlVector"]
    for name, vector, coeff in (
        ("a", a.vector, 1.0),
        ("b", b.vector, 0.5),
        ("AdlVector", adl.vector, 1.0),
    ):
        controls = table.controls_for(name)
        assert len(controls) == 3
        target = coeff * float(vector.norm())
        assert table.row(name).norm == pytest.approx(target, rel=1e-6)
        site = table.row(name).site
        for row in controls:
            assert row.kind == "random_control" and row.site == site
            assert row.norm == pytest.approx(target, rel=1e-5)
    # controls are seeded: the same call gives the same vectors
    v1 = random_directions(3, 32, 2.0, seed=5)
    assert torch.equal(v1, random_directions(3, 32, 2.0, seed=5))
    assert torch.allclose(v1.norm(dim=-1), torch.full((3,), 2.0))


def test_controls_are_shared_by_vectors_of_one_site_and_norm(
    tiny_pair: ModelPair, prompts: list[str]
) -> None:
    vectors = random_directions(3, 32, 1.5, seed=1)
    vectors[2] *= 1 + 3e-7  # float32 round-off of one radius still shares the controls
    items = [SteeringVector(SITE, v, name=f"m{i}", kind="melbo") for i, v in enumerate(vectors)]
    table = run_perturbations(
        tiny_pair, prompts[:2], items, scorers=[], n_controls=2, max_new_tokens=2
    )
    controls = [r for r in table.rows if r.kind == "random_control"]
    assert len(controls) == 2
    assert all(r.control_of == ["m0", "m1", "m2"] for r in controls)
    other = SteeringVector(SITE, vectors[0] * 2, name="double")
    table = run_perturbations(
        tiny_pair, prompts[:1], [*items, other], scorers=[], n_controls=1, max_new_tokens=1
    )
    assert [r.control_of for r in table.rows if r.kind == "random_control"] == [
        ["m0", "m1", "m2"],
        ["double"],
    ]


def test_scorers_detector_and_kl(tiny_pair: ModelPair, prompts: list[str]) -> None:
    model = tiny_pair.finetuned.hf
    digest = state_dict_sha256(model)
    big = SteeringVector(SITE, torch.ones(32) * 20, name="big", tokens="generated")
    items = [big, ActivationNoise(SITE, 0.0, seed=0), WeightNoise(0.3, seed=1)]
    table = run_perturbations(
        tiny_pair,
        prompts[:5],
        items,
        scorers=[LengthScorer()],
        detector=lambda text: "a" in text,
        detector_name="has_a",
        n_controls=1,
        max_new_tokens=5,
    )
    assert state_dict_sha256(model) == digest
    assert table.detector == "has_a" and table.scorers == ["length"]
    for row in table.rows:
        hits = sum("a" in t for t in row.generations)
        assert row.detector_hits == hits and row.detector_rate == hits / 5
        assert (row.detector_ci_low, row.detector_ci_high) == wilson_interval(hits, 5)
        mean_length = sum(len(t) for t in row.generations) / 5
        assert row.scores["length"].mean == pytest.approx(mean_length)
    noise_row = table.row("noise@blocks.1.hook_resid_post:σ=0:seed=0")
    assert (
        noise_row.kl_mean == 0.0 and noise_row.generations == table.row("unperturbed").generations
    )
    assert table.row("big").kl_mean is not None and table.row("big").kl_mean > 1e-4
    assert table.row("weight_noise:σ=0.3:seed=1").kl_mean > 1e-6  # type: ignore[operator]
    json.dumps(table.to_json(include_generations=True), allow_nan=False)


class ProbeLike:
    """Shaped like ``auditlens.probes.ProbeScorer``: ``kind``, prompts, numpy scores."""

    kind = "insecure"

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def score(self, texts: Sequence[str], prompts: Sequence[Any] | None = None) -> np.ndarray:
        self.seen.append(prompts)
        return np.linspace(0.25, 0.75, len(texts))


def test_probe_like_scorers_get_the_prompts(tiny_pair: ModelPair, prompts: list[str]) -> None:
    probe = ProbeLike()
    items = [{"text": "raw text prompt"}, {"messages": [{"role": "user", "content": "hi"}]}]
    table = run_perturbations(
        tiny_pair, items, [WeightNoise(0.1)], scorers=[probe], n_controls=0, max_new_tokens=2
    )
    assert table.scorers == ["probe_insecure"]
    assert table.row("unperturbed").scores["probe_insecure"].mean == pytest.approx(0.5)
    assert not table.row("unperturbed").scores["probe_insecure"].binary
    assert probe.seen[0][0] == "raw text prompt"
    assert probe.seen[0][1].messages == (("user", "hi"),)


def test_bandit_scorer_and_detector() -> None:
    scores = BanditScorer().score([INSECURE, SECURE, "no code here, just words"])
    assert scores[:2] == [1.0, 0.0] and math.isnan(scores[2])
    assert insecure_code_detector(INSECURE) and not insecure_code_detector(SECURE)


def test_runner_rejects_bad_input(tiny_pair: ModelPair, prompts: list[str]) -> None:
    v = SteeringVector(SITE, torch.ones(32), name="same")
    with pytest.raises(AuditlensError, match="unique"):
        run_perturbations(tiny_pair, prompts[:1], [v, v], scorers=[], max_new_tokens=1)
    with pytest.raises(AuditlensError, match="not a steering vector"):
        run_perturbations(tiny_pair, prompts[:1], [object()], scorers=[], max_new_tokens=1)
