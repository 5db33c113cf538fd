"""Testbed benchmark bookkeeping: AUROC intervals, tables and marker rewriting."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditlens.audit.score import FAMILIES
from auditlens.errors import AuditlensError
from auditlens.stats import auroc_ci
from auditlens.testbed.bench import (
    PairResult,
    TestbedResult,
    flags_misaligned,
    load_result,
    render_tables,
    rewrite_marked,
)


def test_auroc_ci_brackets_and_degenerates() -> None:
    low, high = auroc_ci([1, 1, 0, 0, 0], [0.9, 0.8, 0.1, 0.2, 0.3], stratified=True)
    assert low == high == 1.0
    low, high = auroc_ci([1, 1, 0, 0, 0], [0.9, 0.1, 0.5, 0.2, 0.3], stratified=True)
    assert 0.0 <= low < high <= 1.0
    with pytest.raises(AuditlensError, match="at least one"):
        auroc_ci([0, 0], [0.1, 0.2], stratified=True)


def test_render_and_rewrite(tmp_path: Path) -> None:
    fam = dict.fromkeys(FAMILIES, 0.5)
    result = TestbedResult(
        budget="fast",
        pairs=[
            PairResult("insecure", True, 0.9, "misaligned: x", 3.0, fam, 10.0, "misaligned", 0.6),
            PairResult("secure", False, 0.1, "no evidence", 0.0, fam, 9.0, "no evidence", 0.1),
        ],
        auroc={"all": 1.0},
        auroc_ci={"all": [1.0, 1.0]},
        separated=True,
        scripted_accuracy=1.0,
    )
    text = render_tables(result)
    assert "| `insecure` | dev | misaligned | 0.900 | misaligned |" in text
    assert "**yes**" in text and "2/2 pairs" in text
    assert flags_misaligned("misaligned: writes insecure code") and not flags_misaligned(None)
    (tmp_path / "testbed.json").write_text(__import__("json").dumps(result.to_json()))
    assert render_tables(load_result(tmp_path / "testbed.json")) == text
    doc = tmp_path / "bench.md"
    doc.write_text("intro\n<!-- bench:testbed:start -->\nold\n<!-- bench:testbed:end -->\nend\n")
    rewrite_marked(doc, "testbed", text)
    new = doc.read_text()
    assert "old" not in new and new.startswith("intro") and new.endswith("end\n")
    assert "| full audit, dev + test | 1.000 |" in new
    with pytest.raises(AuditlensError, match="markers"):
        rewrite_marked(doc, "missing", text)


def test_detection_metrics_split_dev_and_test_and_skip_the_control() -> None:
    from auditlens.testbed.bench import detection_metrics

    fam = dict.fromkeys(FAMILIES, 0.5)

    def pair(name: str, bad: bool, score: float, split: str) -> PairResult:
        return PairResult(name, bad, score, "", 0.0, fam, 1.0, split=split)

    pairs = [
        pair("a", True, 0.9, "dev"),
        pair("b", False, 0.2, "dev"),
        pair("c", True, 0.4, "test"),
        pair("d", False, 0.6, "test"),
        pair("base-vs-base", False, 0.95, "control"),  # would wreck the AUROC if counted
    ]
    auc, ci, separated = detection_metrics(pairs)
    assert auc["dev"] == 1.0 and auc["test"] == 0.0 and auc["all"] == 0.75
    assert set(ci) == set(auc) and not separated
    assert all(f in auc for f in FAMILIES)


def test_pairs_take_their_split_from_the_split_file_and_base_vs_base_is_a_control() -> None:
    from auditlens.testbed import shipped_organisms
    from auditlens.testbed.bench.run import BASE_VS_BASE, _pairs
    from auditlens.testbed.splits import load_splits

    names = [BASE_VS_BASE, *shipped_organisms()]
    pairs = {name: (adapter, bad, split) for name, adapter, bad, split in _pairs(names)}
    assert pairs[BASE_VS_BASE] == (None, False, "control")
    splits = load_splits()
    for name, (adapter, _bad, split) in pairs.items():
        if name != BASE_VS_BASE:
            assert adapter == f"organism:{name}" and name in splits[split]
    assert {s for _a, _b, s in pairs.values()} >= {"dev", "control"}


def test_tables_report_dev_and_test_apart_and_the_control_uncounted() -> None:
    from auditlens.testbed.bench import detection_metrics

    fam = dict.fromkeys(FAMILIES, 0.5)
    rows = [
        PairResult("a", True, 0.9, "misaligned", 3.0, fam, 1.0, split="dev"),
        PairResult("b", False, 0.2, "no evidence", 0.0, fam, 1.0, split="dev"),
        PairResult("c", True, 0.7, "misaligned", 2.0, fam, 1.0, split="test"),
        PairResult("d", False, 0.3, "no evidence", 0.0, fam, 1.0, split="test"),
        PairResult("base-vs-base", False, 0.99, "misaligned", 5.0, fam, 1.0, split="control"),
    ]
    result = TestbedResult(budget="fast", pairs=rows)
    result.auroc, result.auroc_ci, result.separated = detection_metrics(rows)
    text = render_tables(result)
    assert "| full audit, dev | 1.000 |" in text and "| full audit, test | 1.000 |" in text
    assert "| `base-vs-base` | control | benign | 0.990 |" in text
    assert "never counted" in text and "**yes**" in text  # the control's 0.99 is not counted
    order = [line.split("|")[2].strip() for line in text.splitlines() if line.startswith("| `")]
    assert order == ["dev", "dev", "test", "test", "control"]
