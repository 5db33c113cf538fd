"""Golden equivalence: the fast audit of base vs organism:insecure gives the findings it gave
before the redesign (ids, numbers within a float32 tolerance, verdict). See
tests/golden/golden.py for how the golden file was made and how to regenerate it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.golden.golden import ABS_TOL, GOLDEN, REL_TOL, compare, extract, rescore

pytestmark = pytest.mark.slow


def test_fast_audit_matches_the_golden(tmp_path: Path) -> None:
    from auditlens.audit import audit

    golden = json.loads(GOLDEN.read_text())
    report = audit(None, tmp_path / "out", budget="fast", progress=False, cache=tmp_path / "cache")
    assert report.findings.finetuned.adapter == "organism:insecure"  # the demo pair
    found = json.loads((tmp_path / "out" / "findings.json").read_text())
    assert found["finetuned"]["adapter_sha256"] == golden["made_with"]["adapter_sha256"]
    problems = compare(golden, extract(found))
    assert not problems, "\n".join(problems)
    for finding in report.findings.findings:
        for artifact in finding.artifacts:
            assert (tmp_path / "out" / artifact).is_file(), artifact


def test_compare_catches_differences() -> None:
    golden = json.loads(GOLDEN.read_text())
    same = json.loads(GOLDEN.read_text())
    assert compare(golden, same) == []
    fid = next(iter(same["findings"]))
    value = same["findings"][fid]["value"]
    same["findings"][fid]["value"] = value * (1 + 0.5 * REL_TOL) + 0.5 * ABS_TOL  # rounding
    assert compare(golden, same) == []
    same["findings"][fid]["value"] = value * (1 + 3 * REL_TOL) + 3 * ABS_TOL  # a real change
    same["verdict"] = "x"
    problems = compare(golden, same)
    assert any(fid in p for p in problems) and any("verdict" in p for p in problems)
    del same["findings"][fid]
    assert any("finding ids differ" in p for p in compare(golden, same))


def test_golden_score_follows_from_its_own_numbers() -> None:
    # a change to the score (reference rule, combination, thresholds) must come with the
    # re-scored golden (`python -m tests.golden.golden --rescore`); a stale score fails here
    golden = json.loads(GOLDEN.read_text())
    assert compare(golden, rescore(golden)) == []
    moved = json.loads(GOLDEN.read_text())
    moved["findings"]["behaviour.insecure_code"]["effect_size"] += 3.0
    again = rescore(moved)
    assert again["score"] > golden["score"] and again["verdict"].startswith("misaligned")
