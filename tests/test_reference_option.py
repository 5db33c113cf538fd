"""Scoring an audit against a named benign reference file: the file is used and recorded, and one
that does not fit the budget or the base stops the audit before any step runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from auditlens.audit import Budget, audit
from auditlens.audit import reference as ref
from auditlens.audit.contract import Step, StepOutput
from auditlens.errors import AuditlensError
from auditlens.models import ModelPair
from auditlens.reports.findings import Finding

TINY = Budget("tiny", n_prompts=4, max_length=16, batch_size=4)
BENIGN = [0.0, 1.0, 2.0, 1.5, 0.5]


def _step(z: float, ran: list[str]) -> Step:
    def run(ctx: Any, settings: Any) -> StepOutput:
        ran.append("behaviour")
        finding = Finding(id="behaviour.x", family="behaviour", method="m", statistic="s",
                          value=z, control=0.0, control_kind="null", effect_size=z, summary="",
                          contributes=True)  # fmt: skip
        return StepOutput(findings=[finding])

    return Step(name="behaviour", settings=lambda budget, prompts: {"z": z}, run=run)


def _reference(path: Path, base: str, budget: str = "tiny") -> Path:
    pairs = [ref.ReferencePair(f"benign{i}", f"sha{i}", {"behaviour.x": v})
             for i, v in enumerate(BENIGN)]  # fmt: skip
    return ref.Reference(base, budget, pairs).save(path)


def _null(out: Path) -> dict[str, Any]:
    config = json.loads((out / "findings.json").read_text())["config"]
    return config["score"]["null"]


def test_a_named_reference_is_used_and_recorded(tiny_pair: ModelPair, tmp_path: Path) -> None:
    path = _reference(tmp_path / "mine.json", tiny_pair.base.sha256)
    ran: list[str] = []
    kwargs: dict[str, Any] = {"budget": TINY, "progress": False, "cache": tmp_path / "cache"}
    audit(tiny_pair, tmp_path / "out", steps=[_step(3.0, ran)], **kwargs)
    raw = _null(tmp_path / "out")
    audit(tiny_pair, tmp_path / "out", steps=[_step(3.0, ran)], reference=path, **kwargs)
    used = _null(tmp_path / "out")
    assert raw["kind"] == "no-difference null" and raw["source"] is None  # no tiny reference ships
    assert used["kind"] == "benign reference" and "mine.json (sha256 " in used["source"]
    # the standardised z is the prediction rule's, below the raw 3 (the benign values reach 2)
    assert used["standardised"]["behaviour.x"] == pytest.approx(ref._against(3.0, BENIGN))
    assert used["standardised"]["behaviour.x"] < 2.0
    assert ran == ["behaviour"]  # re-scored from the folder's step cache, not rerun


def test_a_reference_for_another_base_stops_before_any_step(
    tiny_pair: ModelPair, tmp_path: Path
) -> None:
    path = _reference(tmp_path / "other.json", "0" * 64)
    ran: list[str] = []
    with pytest.raises(AuditlensError, match="built on base 000000000000"):
        audit(tiny_pair, tmp_path / "out", budget=TINY, steps=[_step(3.0, ran)], progress=False,
              cache=tmp_path / "cache", reference=path)  # fmt: skip
    assert ran == [] and not (tmp_path / "out" / "findings.json").exists()


def test_reference_for_checks_a_named_file_and_tolerates_the_shipped_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = _reference(tmp_path / "fast.json", "b" * 64, budget="fast")
    with pytest.raises(AuditlensError, match="reference for the fast budget, not standard"):
        ref.reference_for("standard", fast)
    with pytest.raises(AuditlensError, match="cannot read reference"):
        ref.reference_for("fast", tmp_path / "missing.json")
    reference, source, notice = ref.reference_for("fast", fast)
    assert reference is not None and reference.budget == "fast" and not notice
    assert source is not None and source.startswith(str(fast))
    outdated = tmp_path / "reference_fast.json"
    outdated.write_text(
        fast.read_text().replace(
            f'"statistic_version": {ref.STATISTIC_VERSION}', '"statistic_version": 1'
        )
    )
    monkeypatch.setattr(
        ref, "shipped_reference_path", lambda budget: tmp_path / f"reference_{budget}.json"
    )
    assert ref.reference_for("fast") == (None, None, ref.reference_for("fast")[2])
    assert "Benign reference not used" in ref.reference_for("fast")[2]
    assert ref.reference_for("thorough") == (
        None,
        None,
        "",
    )  # none shipped: the raw null, no notice
