"""Shipped probe scorers on the embedded SmolLM2 model (slow: loads the real model)."""

from __future__ import annotations

import numpy as np
import pytest

from auditlens.probes import load_pair_set, load_scorer
from auditlens.probes.experiments import experiment_spec, first_per_group

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pair():
    from auditlens.models import load_pair

    return load_pair()


def test_shipped_scorers_load_and_carry_their_calibration(pair) -> None:
    for kind in ("vulnerable_code", "misaligned_answer"):
        scorer = load_scorer(kind, pair)
        probe = scorer.probe
        assert probe.threshold is not None and probe.target_fpr == 0.01
        assert probe.metrics["evaluation"]["control_fpr"] <= 0.01
        assert probe.d_model == pair.d_model == 576


def test_misaligned_scorer_ranks_held_out_answers(pair) -> None:
    spec = experiment_spec("misaligned_answers", seed=0)  # the split the shipped probe used
    held = first_per_group(spec.data.subset(spec.split.test), 2)
    scorer = load_scorer("misaligned_answer", pair)
    scores = scorer.score(
        [e.answer for e in held.examples], [e.messages[0][1] for e in held.examples]
    )
    y = held.labels
    assert scores[y == 1].mean() > scores[y == 0].mean()


def test_vulnerable_code_scorer_ranks_held_out_templates(pair) -> None:
    data = load_pair_set("vulnerable_code").where(lambda e: e.split == "eval_id")
    held = first_per_group(data, 2)
    scorer = load_scorer("vulnerable_code", pair)
    scores = scorer.score(
        [e.answer for e in held.examples], [e.messages[0][1] for e in held.examples]
    )
    y = held.labels
    assert np.isfinite(scores).all()
    assert scores[y == 1].mean() > scores[y == 0].mean()
