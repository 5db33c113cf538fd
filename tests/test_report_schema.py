"""The findings schema: round trips, version checks, validation and one-line read errors."""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from auditlens.errors import AuditlensError
from auditlens.reports import (
    SCHEMA_VERSION,
    AuditFindings,
    Finding,
    LayerPlot,
    ModelInfo,
    Report,
    Table,
    Text,
    collect_versions,
    render_from_json,
)


def make_finding(**overrides: Any) -> Finding:
    fields: dict[str, Any] = {
        "id": "kl-layer-12",
        "family": "diffing",
        "method": "kl",
        "site": "blocks.12.hook_resid_post",
        "statistic": "mean next-token KL(finetuned || base)",
        "value": 0.31,
        "control": 0.02,
        "control_kind": "base-vs-base",
        "effect_size": 7.5,
        "ci_low": 0.25,
        "ci_high": 0.37,
        "summary": "Fine-tuning moved next-token distributions far beyond the base-vs-base null.",
        "artifacts": ["diffing/kl_per_token.safetensors"],
        "contributes": True,
        "weight": 0.4,
    }
    fields.update(overrides)
    return Finding(**fields)


def make_findings(**overrides: Any) -> AuditFindings:
    fields: dict[str, Any] = {
        "base": ModelInfo(name="SmolLM2-135M-Instruct", sha256="ab" * 32),
        "finetuned": ModelInfo(name="SmolLM2-135M-Instruct", adapter="organisms/insecure-code"),
        "budget": "fast",
        "score": 0.62,
        "verdict": "likely misaligned",
        "summary": "Insecure-code organism: strong diffing and probe evidence.",
        "findings": [
            make_finding(),
            make_finding(id="probe-1", family="probes", method="probe_win_rate", effect_size=None),
        ],
        "notices": ["auditing the base against itself"],
        "config": {"seed": 0, "layers": [6, 12], "nested": {"relative": True}},
        "versions": collect_versions(),
        "timings_s": {"harvest": 12.5, "diffing": 3.25},
    }
    fields.update(overrides)
    return AuditFindings(**fields)


def test_round_trip_write_read(tmp_path: Path) -> None:
    findings = make_findings()
    path = findings.write(tmp_path / "out" / "findings.json")
    assert path.exists()
    assert AuditFindings.read(path) == findings
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION


def test_non_finite_floats_round_trip_as_standard_json(tmp_path: Path) -> None:
    finding = make_finding(value=float("nan"), effect_size=float("inf"), control=float("-inf"))
    findings = make_findings(findings=[finding])
    path = findings.write(tmp_path / "findings.json")

    def reject_constant(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    json.loads(path.read_text(), parse_constant=reject_constant)
    read = AuditFindings.read(path).findings[0]
    assert math.isnan(read.value)
    assert read.effect_size == math.inf
    assert read.control == -math.inf


@pytest.mark.parametrize("score", [0.0, 0.5, 1.0, None])
def test_score_in_bounds_is_accepted(score: float | None) -> None:
    assert make_findings(score=score).score == score


@pytest.mark.parametrize("score", [-0.01, 1.01, float("nan"), float("inf")])
def test_score_out_of_bounds_is_rejected(score: float) -> None:
    with pytest.raises(ValidationError, match="score"):
        make_findings(score=score)


def test_score_assignment_is_validated() -> None:
    findings = make_findings()
    with pytest.raises(ValidationError):
        findings.score = 2.0


def test_current_version_is_accepted_and_foreign_versions_are_not() -> None:
    assert make_findings().schema_version == SCHEMA_VERSION
    for version in ["2.0", "0.9", "1.99", "1", "one.zero", "1.0.0"]:
        with pytest.raises(ValidationError, match="schema_version"):
            make_findings(schema_version=version)


@pytest.mark.parametrize("version", ["2.0", "1.7", "0.1"])
def test_read_rejects_unsupported_version_in_one_line(tmp_path: Path, version: str) -> None:
    data = json.loads(make_findings().to_json())
    data["schema_version"] = version
    path = tmp_path / "findings.json"
    path.write_text(json.dumps(data))
    with pytest.raises(AuditlensError, match=f"schema_version {version} is not supported") as info:
        AuditFindings.read(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"schema_version": "1.0", "base": ', "not valid JSON"),
        ("[1, 2, 3]", "must hold a JSON object"),
        ('{"base": {"name": "x"}}', "no schema_version"),
        ('{"schema_version": "1.0", "budget": "fast"}', "invalid findings: base"),
        ("", "not valid JSON"),
    ],
)
def test_malformed_file_raises_one_line_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "findings.json"
    path.write_text(content)
    with pytest.raises(AuditlensError, match=message) as info:
        AuditFindings.read(path)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_wrongly_typed_field_names_the_field(tmp_path: Path) -> None:
    data = json.loads(make_findings().to_json())
    data["findings"][1]["value"] = "high"
    path = tmp_path / "findings.json"
    path.write_text(json.dumps(data))
    with pytest.raises(AuditlensError, match=r"findings\.1\.value") as info:
        AuditFindings.read(path)
    assert "\n" not in str(info.value)


def test_missing_and_binary_files_raise_auditlens_error(tmp_path: Path) -> None:
    with pytest.raises(AuditlensError, match="cannot read"):
        AuditFindings.read(tmp_path / "absent.json")
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(AuditlensError, match="cannot read"):
        AuditFindings.read(binary)


@pytest.mark.parametrize(
    "artifact",
    ["/etc/passwd", "../outside.json", "a/../../b", "https://example.com/x", "C:\\x", ""],
)
def test_artifacts_must_stay_inside_the_output_folder(artifact: str) -> None:
    with pytest.raises(ValidationError, match="artifact"):
        make_finding(artifacts=[artifact])


def test_finding_consistency_checks() -> None:
    with pytest.raises(ValidationError, match="ci_low > ci_high"):
        make_finding(ci_low=1.0, ci_high=0.0)
    with pytest.raises(ValidationError, match="both ci_low and ci_high"):
        make_finding(ci_high=None)
    with pytest.raises(ValidationError, match="control_kind"):
        make_finding(control=None)
    with pytest.raises(ValidationError, match="family"):
        make_finding(family="vibes")
    with pytest.raises(ValidationError, match="duplicate finding id"):
        make_findings(findings=[make_finding(), make_finding()])
    with pytest.raises(ValidationError, match="Extra inputs"):
        make_finding(efect_size=1.0)
    with pytest.raises(ValidationError, match="created_at"):
        make_findings(created_at="yesterday")


def test_json_schema_export() -> None:
    schema = AuditFindings.json_schema()
    assert schema["title"] == "AuditFindings"
    assert {"schema_version", "findings", "score", "notices"} <= set(schema["properties"])
    assert schema["properties"]["score"]["anyOf"][0]["maximum"] == 1.0
    json.dumps(schema)


def test_collect_versions() -> None:
    versions = collect_versions()
    expected = {"python", "torch", "transformers", "nnsight", "transformer_lens", "sae_lens"}
    assert expected | {"auditlens"} == set(versions)
    assert versions["python"] == platform.python_version()
    assert all(isinstance(value, str) and value for value in versions.values())


def test_report_bundle_round_trip_and_rerender(tmp_path: Path) -> None:
    report = Report(
        findings=make_findings(),
        sections=[
            LayerPlot(title="KL by layer", x=[0, 1, 2], series={"ft vs base": [0.1, 0.5, 0.2]}),
            Table(title="t", columns=["a", "b"], rows=[["x", 1], [None, 2.5]]),
            Text(title="notes", body="one\n\ntwo"),
        ],
    )
    html_path, findings_path = report.write(tmp_path)
    assert (html_path.name, findings_path.name) == ("report.html", "findings.json")
    data_path = tmp_path / "report_data.json"
    again = Report.read(data_path)
    assert again == report
    assert [section.kind for section in again.sections] == ["layer_plot", "table", "text"]
    assert render_from_json(data_path) == html_path.read_text(encoding="utf-8")
    assert AuditFindings.read(findings_path) == report.findings


def test_report_data_errors_are_one_line(tmp_path: Path) -> None:
    findings_only = make_findings().write(tmp_path / "findings.json")
    with pytest.raises(AuditlensError, match="not a report data file"):
        Report.read(findings_only)
    data = {"findings": json.loads(make_findings().to_json()), "sections": [{"kind": "pie"}]}
    path = tmp_path / "report_data.json"
    path.write_text(json.dumps(data))
    with pytest.raises(AuditlensError, match=r"invalid report data: sections\.0") as info:
        Report.read(path)
    assert "\n" not in str(info.value)
    data["findings"]["schema_version"] = "9.0"
    path.write_text(json.dumps(data))
    with pytest.raises(AuditlensError, match=r"schema_version 9\.0"):
        Report.read(path)


def test_section_validation() -> None:
    with pytest.raises(ValidationError, match="has 2 values for 3 layers"):
        LayerPlot(title="p", x=[0, 1, 2], series={"s": [1.0, 2.0]})
    with pytest.raises(ValidationError, match="row 0 has 1 cells"):
        Table(title="t", columns=["a", "b"], rows=[["x"]])
    assert Text(title="t", body="a\nb\n  \n\nc\n").paragraphs() == ["a\nb", "c"]


def _hypothesis(**overrides: Any) -> Any:
    from auditlens.reports import Confirmation, Hypothesis

    fields: dict[str, Any] = {
        "rank": 1,
        "label": "writes insecure code",
        "keywords": ["pickle", "shell=True"],
        "kind": "code_security",
        "source": "adl",
        "evidence": ["kl-layer-12"],
        "strength": 3.1,
        "null": "random directions of equal norm",
        "confirmation": Confirmation(
            test="code_security", result="confirmed", finding_id="probe-1", effect_size=3.7
        ),
    }
    fields.update(overrides)
    return Hypothesis(**fields)


def test_hypotheses_round_trip_and_cite_known_findings(tmp_path: Path) -> None:
    empty = make_findings()
    assert empty.hypotheses == []  # filled by the discovery steps; empty until then
    findings = make_findings(
        hypotheses=[_hypothesis(), _hypothesis(rank=2, confirmation=None, evidence=[])],
        findings=[make_finding(refs=["latent:17", "adl:12"]), make_finding(id="probe-1")],
    )
    back = AuditFindings.read(findings.write(tmp_path / "findings.json"))
    assert back == findings and back.findings[0].refs == ["latent:17", "adl:12"]
    with pytest.raises(ValidationError, match="unknown findings"):
        make_findings(hypotheses=[_hypothesis(evidence=["nope"])])
    with pytest.raises(ValidationError, match="ranks must be unique"):
        make_findings(hypotheses=[_hypothesis(), _hypothesis(confirmation=None)])
    html = Report(findings=findings).to_html()
    assert "What changed" in html and "writes insecure code" in html and "latent:17" in html


def test_a_1_0_file_is_still_readable(tmp_path: Path) -> None:
    data = json.loads(make_findings().to_json())
    data["schema_version"] = "1.0"
    del data["hypotheses"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    assert AuditFindings.read(path).hypotheses == []
