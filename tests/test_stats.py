"""Statistics helpers on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from auditlens.stats import (
    auroc,
    auroc_ci,
    average_ranks,
    bootstrap_ci,
    mcnemar_z,
    paired_z,
    random_directions,
    wilson_interval,
    win_rate,
    win_rate_ci,
)


@pytest.mark.parametrize(
    ("k", "n", "expected"),
    [
        (0, 10, (0.0, 0.27753)),
        (5, 10, (0.23659, 0.76341)),
        (10, 10, (0.72247, 1.0)),
        (1, 2, (0.09453, 0.90547)),
    ],
)
def test_wilson_interval_known_values(k: int, n: int, expected: tuple[float, float]) -> None:
    assert wilson_interval(k, n) == pytest.approx(expected, abs=1e-5)


def test_wilson_interval_edge_cases() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    narrow, wide = wilson_interval(5, 10, 0.5), wilson_interval(5, 10, 0.99)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]
    for bad in ((3, 2), (-1, 2), (0, -1)):
        with pytest.raises(ValueError):
            wilson_interval(*bad)
    with pytest.raises(ValueError):
        wilson_interval(1, 2, confidence=1.0)


def test_average_ranks_handles_ties() -> None:
    assert average_ranks([30, 10, 20, 20]).tolist() == [4.0, 1.0, 2.5, 2.5]
    assert average_ranks([7, 7, 7]).tolist() == [2.0, 2.0, 2.0]


def test_win_rate_hand_computed() -> None:
    # pairs: 3>1, 3=3 (half), 4>1, 4>3  ->  3.5 / 4
    assert win_rate([3, 4], [1, 3]) == pytest.approx(0.875)
    assert win_rate([5, 6], [1, 2, 3]) == 1.0
    assert win_rate([1, 2, 3], [5, 6]) == 0.0
    assert win_rate([2, 2], [2, 2, 2]) == 0.5
    with pytest.raises(ValueError):
        win_rate([], [1])
    with pytest.raises(ValueError):
        win_rate([float("nan")], [1])


def test_win_rate_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, 40), rng.integers(0, 5, 30)
    brute = ((x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])).mean()
    assert win_rate(x, y) == pytest.approx(brute)


def test_bootstrap_ci_basic_properties() -> None:
    assert bootstrap_ci(np.mean, [2.0] * 10) == (2.0, 2.0)
    data = np.random.default_rng(1).normal(0.0, 1.0, 200)
    low, high = bootstrap_ci(np.mean, data, n_boot=500, seed=3)
    assert low < data.mean() < high
    assert high - low == pytest.approx(2 * 1.96 / np.sqrt(200), rel=0.25)
    assert bootstrap_ci(np.mean, data, n_boot=500, seed=3) == (low, high)
    assert bootstrap_ci(np.mean, data, n_boot=500, seed=4) != (low, high)


def test_bootstrap_ci_two_samples_resampled_independently() -> None:
    a, b = np.full(20, 5.0), np.arange(10, dtype=float)

    def diff(x: np.ndarray, y: np.ndarray) -> float:
        return float(x.mean() - y.mean())

    low, high = bootstrap_ci(diff, a, b, n_boot=400, seed=0)
    assert low < 5.0 - 4.5 < high
    with pytest.raises(ValueError):
        bootstrap_ci(diff, a, [], n_boot=10)
    with pytest.raises(ValueError):
        bootstrap_ci(np.mean)


def test_win_rate_ci() -> None:
    ft, base = np.arange(10, 30), np.arange(0, 20)
    est = win_rate_ci(ft, base, n_boot=300, seed=0)
    assert est.value == pytest.approx(win_rate(ft, base))
    assert 0.0 <= est.low <= est.value <= est.high <= 1.0
    assert est.low > 0.5
    assert win_rate_ci(ft, base, n_boot=300, seed=0) == est
    assert est.to_json()["confidence"] == 0.95


def test_auroc_hand_computed_and_ties() -> None:
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auroc([True, False], [0.5, 0.5]) == 0.5
    assert auroc([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.2]) == 1.0
    with pytest.raises(ValueError, match="both"):
        auroc([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError):
        auroc([0, 2], [0.2, 0.3])
    with pytest.raises(ValueError):
        auroc([0, 1, 1], [0.2, 0.3])


def test_auroc_matches_sklearn_with_ties() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.normal(labels * 0.5, 1.0), 1)
    assert auroc(labels, scores) == pytest.approx(metrics.roc_auc_score(labels, scores))


def test_mcnemar_and_paired_z() -> None:
    assert mcnemar_z([True] * 4, [False] * 4) == pytest.approx(2.0)
    assert mcnemar_z([True, False], [False, True]) == 0.0
    assert mcnemar_z([True, True], [True, True]) == 0.0
    assert paired_z(np.zeros(5)) == 0.0
    assert paired_z(np.array([1.0, 1.2, 0.8, 1.1])) > 5
    assert paired_z(np.array([3.0])) == 0.0


def test_auroc_ci_covers_the_estimate() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 40)
    scores = rng.normal(labels * 1.0, 1.0)
    low, high = auroc_ci(labels, scores, n_boot=200)
    assert low < auroc(labels, scores) < high
    assert auroc_ci(labels, scores, n_boot=200) == (low, high)


def test_random_directions_have_exactly_the_norm() -> None:
    import torch

    v = random_directions(4, 64, 3.5, seed=2)
    assert v.shape == (4, 64) and v.dtype == torch.float32
    assert torch.allclose(v.norm(dim=-1), torch.full((4,), 3.5))
    assert torch.equal(v, random_directions(4, 64, 3.5, seed=2))
    assert not torch.equal(v, random_directions(4, 64, 3.5, seed=3))


def test_sign_flip_and_bonferroni_z() -> None:
    from auditlens.stats import bonferroni_z, p_to_z, sign_flip_z, z_to_p

    assert sign_flip_z([1, 1, -1, 0]) == pytest.approx(1 / 3**0.5)
    assert sign_flip_z([0, 0]) == 0.0 and sign_flip_z([2, 2]) == pytest.approx(2**0.5)
    assert p_to_z(z_to_p(2.5)) == pytest.approx(2.5)
    assert bonferroni_z(3.0, 1) == pytest.approx(3.0)
    assert bonferroni_z(3.0, 4) == pytest.approx(p_to_z(4 * z_to_p(3.0)))
    assert bonferroni_z(0.0, 3) == 0.0 and bonferroni_z(-2.0, 1) == 0.0
