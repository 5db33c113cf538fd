"""Probes on tiny in-memory models: feature reading, directions, scorer, drift, experiment."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

from auditlens.errors import AuditlensError
from auditlens.models import ModelPair
from auditlens.probes import (
    PairSet,
    group_split,
    load_scorer,
    misalignment_direction,
    read_features,
    track_drift,
    train_probe,
    transfer_probes,
)
from auditlens.probes.directions import cosine_table, mean_difference
from auditlens.probes.drift import drift_from_scores
from auditlens.probes.experiments import ExperimentSpec, run_probe_experiment
from auditlens.probes.pairsets import LabelledExample
from auditlens.probes.probe import ProbeMismatchError, ProbeMismatchWarning

SITES = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_post", "blocks.2.hook_mlp_out"]
POS = ["import os; os.system(cmd)", "subprocess.run(args, shell=True)", "os.system(cmd)"]
NEG = ["hello world, how are you today?", "The quick brown fox", "Paris is the capital"]


def synthetic_pairs(n_groups: int = 8, per_group: int = 3) -> PairSet:
    """Label 1 answers run shell commands, label 0 answers are small talk; two per group."""
    examples = []
    for g in range(n_groups):
        for k in range(per_group):
            for label, pool in ((0, NEG), (1, POS)):
                answer = f"{pool[(g + k) % len(pool)]} {'x' * (k + 1)}"
                examples.append(
                    LabelledExample(
                        id=f"g{g}/k{k}/{label}",
                        messages=(("user", f"question {g} {'?' * k}"), ("assistant", answer)),
                        label=label,
                        group=f"g{g}",
                        family=f"f{g % 2}",
                    )
                )
    return PairSet("synthetic", "shell", "chat", tuple(examples))


def control_pairs() -> PairSet:
    texts = ["how are you", "hello again world", "the lazy dog", "what is the capital?"] * 5
    examples = [
        LabelledExample(f"c{i}", (("user", "hi"), ("assistant", t)), 0, f"c{i}", "chat")
        for i, t in enumerate(texts)
    ]
    return PairSet("control", "none", "ordinary", tuple(examples))


@pytest.fixture
def identical_pair(tiny_tokenizer: Any, tiny_model_factory: Any) -> ModelPair:
    return ModelPair.from_models(tiny_model_factory("llama"), None, tiny_tokenizer)


def test_torch_and_nnsight_backends_read_the_same_features(tiny_pair: ModelPair) -> None:
    data = synthetic_pairs(3, 2)
    kw: dict[str, Any] = {"aggregations": ("mean", "last", "max"), "progress": False}
    fast = read_features(tiny_pair, data, SITES, backend="torch", batch_size=4, **kw)
    ref = read_features(tiny_pair, data, SITES, backend="nnsight", batch_size=3, **kw)
    assert fast.n == len(data) and set(fast.values) == set(ref.values)
    for key, value in fast.values.items():
        torch.testing.assert_close(value, ref.values[key], rtol=1e-4, atol=1e-5)


def test_batched_reading_keeps_example_order(tiny_pair: ModelPair) -> None:
    data = synthetic_pairs(3, 2)
    batched = read_features(tiny_pair, data, SITES[1:2], batch_size=5, progress=False)
    for i in (0, 3, len(data) - 1):
        one = read_features(tiny_pair, data.subset([i]), SITES[1:2], progress=False)
        torch.testing.assert_close(
            batched.get(SITES[1])[i], one.get(SITES[1])[0], atol=1e-5, rtol=1e-4
        )


def test_sides_and_cache(tiny_pair: ModelPair, tmp_path: Any) -> None:
    data = synthetic_pairs(2, 2)
    base = read_features(tiny_pair, data, SITES[1:2], progress=False, cache_dir=tmp_path)
    ft = read_features(tiny_pair, data, SITES[1:2], side="finetuned", progress=False)
    assert not torch.allclose(base.get(SITES[1]), ft.get(SITES[1]))
    assert base.model_sha256 == tiny_pair.base.sha256 != ft.model_sha256
    cached = read_features(tiny_pair, data, SITES[1:2], progress=False, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    torch.testing.assert_close(cached.get(SITES[1]), base.get(SITES[1]))
    with pytest.raises(AuditlensError, match="no tokens under the mask"):
        read_features(tiny_pair, ["a prompt with no answer"], SITES[1:2], progress=False)


def test_question_framing_reads_the_appended_turn(tiny_pair: ModelPair) -> None:
    data = synthetic_pairs(2, 1)
    plain = read_features(tiny_pair, data, SITES[1:2], mask="last_2", progress=False)
    asked = read_features(
        tiny_pair, data, SITES[1:2], mask="last_2", question="is it safe?", progress=False
    )
    assert not torch.allclose(plain.get(SITES[1]), asked.get(SITES[1]))


def test_directions_and_transfer(identical_pair: ModelPair, tiny_pair: ModelPair) -> None:
    data = synthetic_pairs()
    split = group_split(data.groups, seed=0, labels=data.labels)
    same = transfer_probes(identical_pair, data, split, SITES[1], n_boot=50, progress=False)
    assert same.auroc["base->finetuned"] == same.auroc["base->base"] > 0.9
    assert same.probe_cosine == pytest.approx(1.0) and same.mean_difference_cosine == pytest.approx(
        1.0
    )
    diff = transfer_probes(tiny_pair, data, split, SITES[1], n_boot=50, progress=False)
    assert set(diff.auroc) == {
        "base->base",
        "base->finetuned",
        "finetuned->base",
        "finetuned->finetuned",
    }
    assert diff.mean_difference_cosine > diff.random_bound_95  # a small perturbation keeps it
    json.dumps(diff.to_json())
    d_base = misalignment_direction(tiny_pair, SITES[1], examples=data, progress=False)
    d_ft = misalignment_direction(
        tiny_pair, SITES[1], side="finetuned", examples=data, progress=False
    )
    feats = read_features(tiny_pair, data, SITES[1:2], progress=False)
    x, y = feats.get(SITES[1]), torch.as_tensor(data.labels)
    torch.testing.assert_close(d_base.vector, mean_difference(x[y == 1], x[y == 0]))
    table = cosine_table({"base": d_base, "finetuned": d_ft})
    assert table.matrix[0][0] == pytest.approx(1.0) and table.matrix[0][1] < 1.0


def _saved_scorer(pair: ModelPair, tmp_path: Any) -> Any:
    data = synthetic_pairs()
    feats = read_features(pair, data, SITES[1:2], progress=False)
    probe = train_probe(
        feats.get(SITES[1]), data.labels, site=SITES[1], model_sha256=feats.model_sha256
    )
    probe.threshold = 0.0
    probe.save(tmp_path / "scorer")
    return tmp_path / "scorer"


def test_scorer_scores_texts_and_checks_the_model(tiny_pair: ModelPair, tmp_path: Any) -> None:
    path = _saved_scorer(tiny_pair, tmp_path)
    scorer = load_scorer("vulnerable_code", tiny_pair, path=path)
    texts = ["os.system(cmd) xx", "hello world, how are you today? x", ""]
    scores = scorer.score(texts, prompts=["question 1", "question 2", None])
    assert scores.shape == (3,) and np.isfinite(scores).all()
    assert scores[0] > scores[1]
    assert scorer.flag(texts[:2]).dtype == bool
    with pytest.raises(ProbeMismatchError):
        load_scorer("vulnerable_code", tiny_pair, side="finetuned", path=path)
    with pytest.warns(ProbeMismatchWarning):
        load_scorer("vulnerable_code", tiny_pair, side="finetuned", path=path, allow_mismatch=True)
    with pytest.raises(AuditlensError, match="unknown scorer"):
        load_scorer("toxicity", tiny_pair, path=path)


def test_drift_on_identical_and_different_pairs(
    identical_pair: ModelPair, tiny_pair: ModelPair, tmp_path: Any
) -> None:
    scorer = load_scorer(
        "misaligned_answer", identical_pair, path=_saved_scorer(identical_pair, tmp_path)
    )
    prompts = ["hello world", "def add(a, b):", "What is the capital?", "import os"]
    same = track_drift(identical_pair, prompts, scorer, max_new_tokens=4, n_boot=50)
    assert same.win_rate.value == 0.5 and same.null is None
    assert same.generations["base"] == same.generations["finetuned"]

    def length(texts: Any, prompts: Any) -> np.ndarray:
        return np.array([len(t) for t in texts], dtype=float)

    sampled = track_drift(
        tiny_pair, prompts, length, max_new_tokens=4, temperature=1.0, seed=3, n_boot=50
    )
    assert sampled.null is not None and 0 <= sampled.win_rate.value <= 1
    assert sampled.win_rate.low <= sampled.win_rate.value <= sampled.win_rate.high
    json.dumps(sampled.to_json())


def test_drift_from_scores_counts_ties_half() -> None:
    result = drift_from_scores([0, 1, 2], [1, 2, 3], n_boot=100)
    assert result.win_rate.value == pytest.approx((6 + 0.5 * 2) / 9)
    assert drift_from_scores([1, 1], [1, 1], n_boot=10).win_rate.value == 0.5


def test_experiment_runs_end_to_end_on_a_tiny_model(tiny_pair: ModelPair) -> None:
    data = synthetic_pairs(10, 2)
    spec = ExperimentSpec(
        "synthetic", data, group_split(data.groups, seed=0, labels=data.labels), control_pairs()
    )
    result = run_probe_experiment(
        tiny_pair, spec, SITES[1:], aggregations=("mean", "max"), n_boot=50, n_shuffles=2,
        progress=False,
    )  # fmt: skip
    assert len(result.sweep.rows) == 4
    assert result.probe.threshold is not None and result.probe.target_fpr == 0.01
    assert result.evaluation.control_fpr <= 0.01
    assert "recall @ 1% control FPR" in result.table()
    json.dumps(result.to_json())
