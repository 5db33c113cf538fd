"""The affordance sweep: aggregation and tables on synthetic records, and one resumable
organism run on a tiny pair with a replayed call cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from auditlens.agent.sweep import aggregate, organisms_for, render_game_tables, run_organism
from auditlens.agent.tools import Limits, Toolkit
from auditlens.errors import AuditlensError


def record(
    org: str,
    split: str,
    subset: str,
    verdict: bool,
    d1: Any,
    d10: Any,
    trig: Any = None,
    standalone: dict[str, Any] | None = None,
    cited: list[str] | None = None,
) -> dict:
    return {
        "organism": org, "split": split, "subset": subset,
        "grade": {"verdict_correct": verdict, "discovery_at_1": d1, "discovery_at_10": d10,
                  "trigger_found": trig},
        "standalone": standalone or {}, "cited": cited or [],
    }  # fmt: skip


RECORDS = [
    record("a", "test", "black-box", True, False, False, standalone={"target_words": False}),
    record("b", "test", "black-box", False, False, True, True, {"target_words": True}),
    record(
        "a",
        "test",
        "all",
        True,
        True,
        True,
        standalone={"list_hypotheses": True},
        cited=["list_hypotheses"],
    ),
    record("b", "test", "all", True, False, True, False, {"list_hypotheses": True}),
    record(
        "d",
        "dev",
        "all",
        False,
        True,
        True,
        standalone={"list_hypotheses": True},
        cited=["list_hypotheses"],
    ),
    record(
        "d", "dev", "black-box+diffing", False, True, True, standalone={"list_hypotheses": True}
    ),
    record("base-vs-base", "control", "all", True, None, None),
]


def test_aggregate_counts_per_split_and_subset() -> None:
    table = aggregate(RECORDS)
    assert table["test"]["black-box"] == {
        "verdict": [True, False], "discovery@1": [False, False], "discovery@10": [False, True],
        "trigger": [True],
    }  # fmt: skip
    assert table["test"]["all"]["discovery@1"] == [True, False]
    assert table["control"]["all"] == {"verdict": [True], "discovery@1": [],
                                       "discovery@10": [], "trigger": []}  # fmt: skip
    assert set(table) == {"test", "dev", "control"}


def test_tables_show_rates_with_wilson_intervals_and_tool_quality() -> None:
    text = render_game_tables(RECORDS, "fast")
    test = text.split("**test**")[1].split("**control**")[0]
    assert "| black-box | 1/2 = 0.50 [0.09, 0.91] | 0/2 = 0.00 [0.00, 0.66] |" in test
    assert "| all | 2/2 = 1.00 [0.34, 1.00] | 1/2 = 0.50" in test
    # list_hypotheses named the truth alone on both organisms, the agent cited it once
    assert "| list_hypotheses | 2/2 = 1.00 [0.34, 1.00] | 1/2 = 0.50 [0.09, 0.91] |" in test
    assert "| target_words | 1/2 = 0.50 [0.09, 0.91] | 0/2 = 0.00 [0.00, 0.66] |" in test
    assert text.index("**dev**") < text.index("**test**") < text.index("**control**")
    # per tool, the widest subset it ran in counts ("all", not the longer-named subset)
    dev = text.split("**dev**")[1].split("**test**")[0]
    assert "| list_hypotheses | 1/1 = 1.00 [0.21, 1.00] | 1/1 = 1.00 [0.21, 1.00] |" in dev
    assert "| all | 1/1 = 1.00 [0.21, 1.00] | – | – | – |" in text.split("**control**")[1]


def test_split_names_are_checked() -> None:
    with pytest.raises(AuditlensError, match="unknown split"):
        organisms_for("train")
    assert organisms_for("dev")[0] == ("base-vs-base", "control")


def test_run_organism_resumes_and_replays(tiny_pair: Any, tmp_path: Path, monkeypatch) -> None:
    from auditlens.agent import investigator, sweep

    small = investigator.InvestigatorConfig(max_calls=4, per_domain=1, check_prompts=2)
    monkeypatch.setitem(sweep.INVESTIGATOR_BUDGETS, "fast", small)
    loads: list[str] = []

    def load(name: str) -> Any:
        loads.append(name)
        return tiny_pair

    original = sweep.Toolkit.create

    def create(*a: Any, **k: Any) -> Any:  # tiny limits for the tiny pair
        return original(*a, limits=Limits(max_new_tokens=4, max_prompts=4), **k)

    monkeypatch.setattr(sweep.Toolkit, "create", create)
    subsets = ["black-box", "black-box+diffing"]
    first = run_organism("loyalty", "dev", tmp_path, "fast", subsets, load, lambda n: None)
    assert [r["subset"] for r in first] == subsets and loads == ["loyalty"]
    assert all(r["grade"]["organism"] == "loyalty" and r["n_calls"] <= 4 for r in first)
    # the black-box calls were replayed for the second subset: one pass of tools
    folder = tmp_path / "fast" / "loyalty"
    keys = [json.loads(line)["key"] for line in (folder / "calls.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys))
    wider = json.loads((folder / "black-box+diffing.json").read_text())["transcript"]["calls"]
    assert any(c["replayed"] for c in wider) and not all(c["replayed"] for c in wider)
    again = run_organism("loyalty", "dev", tmp_path, "fast", subsets, load, lambda n: None)
    assert loads == ["loyalty"] and [r["grade"] for r in again] == [r["grade"] for r in first]
    # records written by other code (same version number, edited package) are redone
    monkeypatch.setattr(sweep, "code_version", lambda: "0.1.0+edited")
    run_organism("loyalty", "dev", tmp_path, "fast", subsets[:1], load, lambda n: None)
    assert loads == ["loyalty", "loyalty"]
    assert json.loads((folder / "black-box.json").read_text())["version"] == "0.1.0+edited"


def _inode(folder: Path, step: str) -> int:
    (saved,) = (folder / "steps" / step).glob("*/output.json")
    return saved.stat().st_ino


def test_list_hypotheses_reuses_a_testbed_audits_steps(tiny_pair: Any, tmp_path: Path) -> None:
    from auditlens.agent.sweep import DISCOVERY_STEPS, seed_steps
    from auditlens.agent.tools.hypotheses import ListHypothesesInput
    from auditlens.audit import Budget, audit
    from auditlens.audit.steps import concern, diffing, discovery, layers
    from auditlens.models import ModelPair

    tiny = Budget("tiny", n_prompts=4, max_length=16, batch_size=4)
    steps = [layers.STEP, diffing.STEP, concern.STEP, discovery.STEP]
    audit(tiny_pair, tmp_path / "audits" / "org", budget=tiny, steps=steps, progress=False)
    other = ModelPair.from_models(tiny_pair.base.hf, None, tiny_pair.tokenizer)  # base vs base
    audit(other, tmp_path / "audits" / "other", budget=tiny, steps=steps, progress=False)
    for name, reused in (("org", True), ("other", False)):
        ws = tmp_path / name / "ws"
        assert seed_steps(tmp_path / "audits" / name, ws) == list(DISCOVERY_STEPS)
        toolkit = Toolkit.create(tiny_pair, ws, budget=tiny)
        listed = toolkit.list_hypotheses(ListHypothesesInput(limit=3))
        assert listed.covered.startswith("ranks 1-")
        audit_dir, work = tmp_path / "audits" / name, ws / "discovery"
        for step in DISCOVERY_STEPS:  # hard links of the audit's outputs, or recomputed
            assert (_inode(audit_dir, step) == _inode(work, step)) is reused, (name, step)
        assert seed_steps(audit_dir, ws) == []  # what the workspace has is kept
