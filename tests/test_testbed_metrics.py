"""The testbed's verdict metrics on synthetic PairResults: accuracy, false alarms, AUROC per
split, family ablations and bootstrap intervals (base vs base never counted)."""

from __future__ import annotations

import pytest

from auditlens.audit.score import FAMILIES, score_from_z
from auditlens.testbed.bench import PairResult, TestbedResult, render_tables, split_metrics
from auditlens.testbed.bench.metrics import without_family


def _row(name: str, truth: bool, z: dict[str, float], split: str) -> PairResult:
    from auditlens.audit.score import bonferroni_max

    total = score_from_z(bonferroni_max(list(z.values())))
    verdict = "misaligned: x" if total >= 0.5 else "no evidence"
    fam = {f: score_from_z(bonferroni_max([z[f]])) if f in z else 0.0 for f in FAMILIES}
    return PairResult(name, truth, total, verdict, 0.0, fam, 1.0, split=split, family_z=z)


ROWS = [
    _row("bad1", True, {"behaviour": 5.0, "adversary": 0.0}, "dev"),
    _row("bad2", True, {"behaviour": 0.0, "adversary": 4.0}, "dev"),
    _row("bad3", True, {"behaviour": 1.0, "adversary": 0.5}, "dev"),  # a miss
    _row("ok1", False, {"behaviour": 0.2, "adversary": 0.1}, "dev"),
    _row("ok2", False, {"behaviour": 3.5, "adversary": 0.0}, "dev"),  # a false alarm
    _row("ok3", False, {"behaviour": 0.0, "adversary": 0.0}, "dev"),
    _row("t1", True, {"behaviour": 6.0, "adversary": 6.0}, "test"),
    _row("t2", False, {"behaviour": 0.0, "adversary": 0.3}, "test"),
    _row("base-vs-base", False, {"behaviour": 9.0}, "control"),  # never counted
]


def test_dev_metrics_count_misses_and_false_alarms() -> None:
    m = split_metrics(ROWS, "dev")
    assert (m.n, m.n_misaligned) == (6, 3)
    assert m.accuracy == pytest.approx(4 / 6) and sorted(m.misses) == ["bad3", "ok2"]
    assert m.false_alarm_rate == pytest.approx(1 / 3)
    assert m.accuracy_ci[0] <= m.accuracy <= m.accuracy_ci[1]
    assert m.false_alarm_ci is not None and m.false_alarm_ci[0] <= 1 / 3 <= m.false_alarm_ci[1]
    # bad1 > bad2 > ok2 > bad3 > ok1 = ok3 in score: 8 of 9 (bad, ok) pairs ordered right
    assert m.auroc == pytest.approx(8 / 9)
    # behaviour alone misses bad2; without the adversary family, bad2 drops out too
    assert m.family_alone["behaviour"] < m.auroc and m.family_removed["adversary"] < m.auroc


def test_test_split_and_control_are_apart() -> None:
    test = split_metrics(ROWS, "test")
    assert (test.n, test.accuracy, test.false_alarm_rate, test.auroc) == (2, 1.0, 0.0, 1.0)
    everything = split_metrics(ROWS, "all")
    assert everything.n == 8 and "base-vs-base" not in everything.misses
    only_bad = split_metrics([r for r in ROWS if r.misaligned], "dev")
    assert only_bad.auroc is None and only_bad.false_alarm_rate is None


def test_without_family_recombines_the_rest() -> None:
    row = ROWS[1]
    assert without_family(row, "adversary") == pytest.approx(score_from_z(0.0))
    assert without_family(row, "behaviour") == pytest.approx(score_from_z(4.0))


def test_tables_show_each_split() -> None:
    result = TestbedResult(budget="fast", pairs=ROWS)
    result.metrics = {k: split_metrics(ROWS, k).to_json() for k in ("dev", "test", "all")}
    text = render_tables(result)
    assert "| dev | 6 (3) | 0.67" in text and "bad3, ok2" in text
    assert "| test | adversary |" in text
