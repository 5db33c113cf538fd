"""Probe core: aggregation, planted-direction recovery, shuffled labels, splits, calibration,
save/load (fast; synthetic data only)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from auditlens.errors import AuditlensError
from auditlens.probes import ProbeConfig, calibrate_threshold, group_split, load_probe, train_probe
from auditlens.probes.directions import cosine
from auditlens.probes.evaluate import evaluate_scores, shuffled_label_control
from auditlens.probes.features import aggregate, parse_mask
from auditlens.probes.probe import ProbeMismatchError, ProbeMismatchWarning
from auditlens.probes.splits import holdout_split
from auditlens.stats import auroc


def planted(n: int = 400, d: int = 48, strength: float = 5.0, seed: int = 0):
    """Gaussian features with the class signal along one random unit direction."""
    gen = torch.Generator().manual_seed(seed)
    direction = torch.randn(d, generator=gen)
    direction /= direction.norm()
    y = torch.arange(n) % 2
    x = torch.randn(n, d, generator=gen) + strength * y[:, None].float() * direction
    return x, y.numpy(), direction


# ------------------------------------------------------------------------ aggregation


def test_aggregation_modes_on_a_hand_made_example() -> None:
    acts = torch.tensor(
        [
            [[1.0, 0.0], [3.0, 5.0], [2.0, -1.0], [9.0, 9.0]],
            [[4.0, 4.0], [0.0, 8.0], [7.0, 7.0], [7.0, 7.0]],
        ]
    )
    mask = torch.tensor([[False, True, True, False], [True, False, False, False]])
    assert torch.equal(aggregate(acts, mask, "mean"), torch.tensor([[2.5, 2.0], [4.0, 4.0]]))
    assert torch.equal(aggregate(acts, mask, "max"), torch.tensor([[3.0, 5.0], [4.0, 4.0]]))
    assert torch.equal(aggregate(acts, mask, "last"), torch.tensor([[2.0, -1.0], [4.0, 4.0]]))


def test_aggregation_rejects_rows_without_tokens_and_unknown_modes() -> None:
    acts = torch.zeros(2, 3, 4)
    mask = torch.tensor([[True, False, False], [False, False, False]])
    with pytest.raises(AuditlensError, match="no tokens under the mask"):
        aggregate(acts, mask, "mean")
    with pytest.raises(AuditlensError, match="unknown aggregation"):
        aggregate(acts, torch.ones(2, 3, dtype=torch.bool), "median")


def test_parse_mask() -> None:
    assert parse_mask("last_4").k == 4 and parse_mask("last_4").kind == "last_k"
    assert parse_mask("assistant").kind == "assistant"
    with pytest.raises(AuditlensError):
        parse_mask("first_2")


# ------------------------------------------------------------------ planted direction


@pytest.mark.parametrize("method", ["logreg", "diff_means"])
def test_probe_recovers_a_planted_direction(method: str) -> None:
    x, y, direction = planted()
    probe = train_probe(x[:300], y[:300], ProbeConfig(method=method))  # type: ignore[arg-type]
    assert cosine(probe.direction, direction) > 0.85
    assert auroc(y[300:], probe.score(x[300:]).numpy()) > 0.99
    assert abs(float(probe.direction.norm()) - 1) < 1e-5


def test_logreg_intercept_option() -> None:
    x, y, _ = planted()
    x = x + 5.0  # shift: standardization removes it, so no intercept is needed
    assert train_probe(x, y).bias == 0.0
    assert train_probe(x, y, ProbeConfig(fit_intercept=True)).bias != 0.0


def test_shuffled_label_control_sits_near_chance() -> None:
    x, y, _ = planted(n=600)
    ctrl = shuffled_label_control(x[:400], y[:400], x[400:], y[400:], n_shuffles=8, seed=1)
    assert len(ctrl.aurocs) == 8
    assert abs(ctrl.mean - 0.5) < 0.1
    real = train_probe(x[:400], y[:400])
    assert auroc(y[400:], real.score(x[400:]).numpy()) > 0.95


def test_probe_config_validation() -> None:
    with pytest.raises(AuditlensError):
        ProbeConfig(C=0)
    with pytest.raises(AuditlensError):
        ProbeConfig(method="svm")  # type: ignore[arg-type]
    with pytest.raises(AuditlensError, match="both classes"):
        train_probe(torch.zeros(4, 3), [1, 1, 1, 1])


# --------------------------------------------------------------------------- splits


def test_group_split_never_shares_a_template() -> None:
    groups = [f"t{i % 13}" for i in range(260)]
    labels = [i % 2 for i in range(260)]
    for seed in range(20):
        split = group_split(groups, seed=seed, labels=labels)
        parts = split.groups_of(groups)
        assert not (parts["train"] & parts["val"])
        assert not (parts["train"] & parts["test"])
        assert not (parts["val"] & parts["test"])
        assert len(split.train) + len(split.val) + len(split.test) == 260
        split.check_disjoint(groups)


def test_holdout_split_keeps_families_and_templates_apart() -> None:
    groups = [f"f{i % 4}_t{i % 12}" for i in range(240)]
    families = [g.split("_")[0] for g in groups]
    split = holdout_split(
        groups,
        [f == "f3" for f in families],
        val_fraction=0.25,
        seed=0,
        labels=[(i // 12) % 2 for i in range(240)],
    )
    assert {families[i] for i in split.test} == {"f3"}
    assert "f3" not in {families[i] for i in split.train}
    split.check_disjoint(groups)


def test_split_leak_is_detected() -> None:
    from auditlens.probes.splits import Split

    leaky = Split(np.array([0, 1]), np.array([2]), np.array([3]))
    with pytest.raises(AuditlensError, match="shared"):
        leaky.check_disjoint(["a", "b", "c", "a"])


# ---------------------------------------------------------------------- calibration


@pytest.mark.parametrize("n", [50, 100, 101, 250, 1000])
def test_calibrated_threshold_keeps_control_fpr_at_most_one_percent(n: int) -> None:
    rng = np.random.default_rng(n)
    control = rng.normal(size=n)
    thr = calibrate_threshold(control, 0.01)
    assert (control > thr).mean() <= 0.01
    assert (control > thr).sum() == n // 100  # uses the whole allowance
    ties = np.round(control, 1)  # ties never push it over the allowance
    assert (ties > calibrate_threshold(ties, 0.01)).mean() <= 0.01


def test_evaluate_scores_reports_recall_at_the_control_threshold() -> None:
    control = np.linspace(-3, 1, 200)  # threshold: the 3rd highest control score
    labels = np.array([1] * 10 + [0] * 10)
    scores = np.r_[np.linspace(0.5, 3, 10), np.linspace(-3, 0.0, 10)]
    ev = evaluate_scores(labels, scores, control_scores=control, fpr=0.01, n_boot=50)
    assert ev.threshold == pytest.approx(sorted(control)[-3])
    assert ev.control_fpr <= 0.01
    assert ev.recall_at_fpr == pytest.approx(float((scores[:10] > ev.threshold).mean()))
    assert ev.auroc == 1.0 and ev.auroc_ci[1] == 1.0
    json.dumps(ev.to_json())


# ------------------------------------------------------------------------ save/load


def test_save_load_round_trip(tmp_path) -> None:
    x, y, _ = planted()
    probe = train_probe(
        x, y, site="blocks.1.hook_resid_post", aggregation="max", model_sha256="a" * 64
    )
    probe.threshold, probe.target_fpr, probe.metrics = 1.25, 0.01, {"auroc": 0.99}
    st, js = probe.save(tmp_path / "p")
    assert st.suffix == ".safetensors" and js.suffix == ".json"
    back = load_probe(tmp_path / "p.json", model_sha256="a" * 64)
    assert torch.equal(back.weight, probe.weight) and torch.equal(back.scale, probe.scale)
    assert torch.allclose(back.score(x), probe.score(x))
    assert (back.site, back.aggregation, back.threshold) == (probe.site, "max", 1.25)
    assert back.metrics == {"auroc": 0.99}
    from safetensors.torch import load_file

    assert torch.allclose(load_file(str(st))["direction"], probe.direction)


def test_loading_on_another_model_errors_or_warns(tmp_path) -> None:
    x, y, _ = planted()
    train_probe(x, y, model_sha256="a" * 64).save(tmp_path / "p")
    with pytest.raises(ProbeMismatchError, match="allow_mismatch"):
        load_probe(tmp_path / "p", model_sha256="b" * 64)
    with pytest.warns(ProbeMismatchWarning):
        load_probe(tmp_path / "p", model_sha256="b" * 64, allow_mismatch=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_probe(tmp_path / "p", model_sha256="a" * 64)
    with pytest.raises(AuditlensError, match="no probe"):
        load_probe(tmp_path / "missing")


def test_group_bootstrap_is_wider_than_example_bootstrap_on_duplicates() -> None:
    from auditlens.stats import auroc_ci

    rng = np.random.default_rng(0)
    base_scores = rng.normal(size=(8, 2)) + np.array([0.0, 0.8])  # 8 templates, 2 labels
    scores = np.repeat(base_scores, 10, axis=0).ravel()  # every template repeated 10 times
    labels = np.tile([0, 1], 80)
    groups = [f"t{i // 20}" for i in range(160)]
    low_g, high_g = auroc_ci(labels, scores, groups, n_boot=300)
    ev = evaluate_scores(labels, scores, control_scores=scores[labels == 0], n_boot=300)
    assert high_g - low_g > ev.auroc_ci[1] - ev.auroc_ci[0]
    assert low_g <= ev.auroc <= high_g
