"""The CLI: help everywhere, user errors as one line with exit code 2, and a tiny audit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from auditlens.audit import audit
from auditlens.audit.reference import STATISTIC_VERSION
from auditlens.models import ModelPair


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auditlens.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "command",
    [
        [], ["audit"], ["harvest"], ["organisms"], ["bench", "testbed"], ["bench", "reference"],
        ["bench", "adl-reference"],
        ["mcp"], ["agent", "scripted"], ["agent", "investigate"], ["bench", "game"], ["probes"],
        ["probes", "vulnerable-code"], ["probes", "drift"],
        ["probes", "build-data"], ["cache"], ["cache", "info"], ["cache", "prune"],
    ],
)  # fmt: skip
def test_help_on_every_command(command: list[str]) -> None:
    proc = _cli(*command, "--help")
    assert proc.returncode == 0 and "Usage" in proc.stdout


def test_bench_bad_split_is_one_line_exit_2() -> None:
    proc = _cli("bench", "testbed", "--split", "train")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and lines == [
        "error: --split must be all, dev or test, not 'train'"
    ]


def test_bench_game_missing_audits_folder_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = _cli("bench", "game", "--audits", str(tmp_path / "none"), "--out", str(tmp_path / "g"))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and lines == [f"error: --audits {tmp_path / 'none'}: not a folder"]
    assert not (tmp_path / "g").exists()


def test_adl_reference_refuses_test_organisms(tmp_path: Path) -> None:
    path = tmp_path / "ref.safetensors"
    proc = _cli("bench", "adl-reference", "--organisms", "phishing", "--path", str(path))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and lines == [
        "error: test organisms cannot be in the reference: phishing"
    ]
    assert not path.exists()


@pytest.mark.parametrize("command", [["audit"], ["bench", "testbed"]])
def test_a_wrong_reference_file_is_refused_before_any_model_loads(
    command: list[str], tmp_path: Path
) -> None:
    fast = tmp_path / "fast.json"
    fast.write_text(json.dumps({"format": "auditlens.reference",
                                "statistic_version": STATISTIC_VERSION,
                                "base_sha256": "b", "budget": "fast", "pairs": []}))  # fmt: skip
    out = tmp_path / "out"
    for path, error in [
        (tmp_path / "missing.json", "error: cannot read reference"),
        (fast, "error: " + str(fast) + " is a reference for the fast budget, not standard"),
    ]:
        proc = _cli(*command, "--budget", "standard", "--reference", str(path), "--out", str(out))
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(error), lines
    assert not out.exists()


def test_a_reference_of_your_own_is_refused_without_what_it_needs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for args, error in [
        (["--base", "my/base"], "error: the testbed's organisms are fine-tunes of"),
        (["--benign", "my/ft"], "error: --benign needs --path"),
    ]:
        proc = _cli("bench", "reference", "--out", str(out), *args)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(error), lines
    assert not out.exists()


def test_user_error_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = _cli("audit", "--out", str(tmp_path), "--base", str(tmp_path / "missing"))
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "does not exist" in lines[0]
    assert "Traceback" not in proc.stderr
    proc = _cli("audit", "--out", str(tmp_path), "--budget", "huge")
    assert proc.returncode == 2 and "unknown budget" in proc.stderr
    for args in (
        ["agent", "investigate", "--workspace", str(tmp_path), "--tools", "black-box,telepathy"],
        ["mcp", "--workspace", str(tmp_path), "--tools", "telepathy"],
        ["bench", "game", "--out", str(tmp_path), "--split", "train"],
        ["bench", "game", "--out", str(tmp_path), "--subsets", "black-box+telepathy"],
    ):
        proc = _cli(*args)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), args
    debug = _cli("--debug", "audit", "--out", str(tmp_path), "--base", str(tmp_path / "missing"))
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_audit_skeleton_on_tiny_pair(
    tiny_pair: ModelPair, prompts: list[str], tmp_path: Path
) -> None:
    report = audit(tiny_pair, tmp_path, prompts=prompts, progress=False)
    html = (tmp_path / "report.html").read_text()
    findings = json.loads((tmp_path / "findings.json").read_text())
    assert "plotly" in html.lower() and "Per-token KL" in html
    ids = {f["id"] for f in findings["findings"]}
    assert {"layers.peak_rel_diff", "kl.mean"} <= ids
    kl = next(f for f in findings["findings"] if f["id"] == "kl.mean")
    assert kl["value"] > 0
    assert report.findings.timings_s["layers"] >= 0
    again = audit(tiny_pair, tmp_path, prompts=prompts, progress=False)  # reuses the step cache
    assert any("reused" in n for n in again.findings.notices)


def test_base_vs_base_audit_is_flagged_and_zero(
    tiny_model_factory: Any, tiny_tokenizer: Any, prompts: list[str], tmp_path: Path
) -> None:
    pair = ModelPair.from_models(tiny_model_factory(), None, tiny_tokenizer)
    report = audit(pair, tmp_path, prompts=prompts, progress=False)
    assert any("null control" in n for n in report.findings.notices)
    values = {f.id: f.value for f in report.findings.findings}
    assert values["kl.mean"] == pytest.approx(0.0, abs=1e-6)
    assert values["layers.peak_rel_diff"] == pytest.approx(0.0, abs=1e-6)
