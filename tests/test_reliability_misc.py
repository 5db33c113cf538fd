"""Smaller reliability cases: report files get normal permissions, an over-long prompt is cut
with a notice in the report, and ``help(auditlens)`` / ``dir(auditlens)`` show the lazily
exported names."""

from __future__ import annotations

import os
import pydoc
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from auditlens.audit import AuditContext, Budget, audit
from auditlens.audit.steps import layers
from auditlens.errors import AuditlensError

TINY = Budget("tiny", n_prompts=4, max_length=16, batch_size=4)


def test_report_files_have_normal_permissions(tiny_pair: Any, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        audit(tiny_pair, tmp_path, budget=TINY, prompts=["hi", "hello"], steps=[layers.STEP])
    finally:
        os.umask(old)
    for name in ("report.html", "findings.json", "report_data.json"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o644, f"{name}: {oct(mode)}"
    os.umask(0o077)  # a private umask is respected
    try:
        audit(tiny_pair, tmp_path / "p", budget=TINY, prompts=["hi"], steps=[layers.STEP])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "p" / "report.html").stat().st_mode) == 0o600


def test_over_long_prompt_is_cut_with_a_notice(tiny_pair: Any, tmp_path: Path) -> None:
    long = "hello world " * 20_000  # about 240 KB
    budget = Budget("tiny", n_prompts=4, max_length=64, batch_size=4)
    report = audit(tiny_pair, tmp_path, budget=budget, prompts=["hi", long], steps=[layers.STEP])
    notices = [n for n in report.findings.notices if "longer than the budget's max_length" in n]
    assert len(notices) == 1 and notices[0].startswith("1 of 2 prompts")
    assert "only their first 64 tokens were read" in notices[0]
    assert "longer than the budget" in (tmp_path / "report.html").read_text()
    short = audit(tiny_pair, tmp_path / "s", budget=budget, prompts=["hi"], steps=[layers.STEP])
    assert not any("max_length" in n for n in short.findings.notices)


def test_help_and_dir_show_the_lazy_names() -> None:
    code = (
        "import sys, pydoc, auditlens\n"
        "assert 'torch' not in sys.modules  # import stays cheap\n"
        "names = dir(auditlens)\n"
        "assert {'load_pair', 'ModelPair', 'audit', 'AuditlensError'} <= set(names), names\n"
        "text = pydoc.render_doc(auditlens, renderer=pydoc.plaintext)\n"
        "assert 'load_pair(' in text and 'class ModelPair' in text, text\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert callable(pydoc.render_doc)


def test_no_pickle_anywhere_in_the_package() -> None:
    """Nothing imports pickle (or its wrappers); every ``torch.load`` has ``weights_only=True``."""
    import ast

    root = Path(__file__).resolve().parents[1]
    files = [
        p for d in ("auditlens", "diffing", "probes", "adversary", "reports")
        for p in (root / d).rglob("*.py")
    ]  # fmt: skip
    assert len(files) > 50
    banned = {"pickle", "cPickle", "dill", "joblib", "cloudpickle"}
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not {a.name.split(".")[0] for a in node.names} & banned, path
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] not in banned, path
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
            ):
                safe = any(
                    k.arg == "weights_only"
                    and isinstance(k.value, ast.Constant)
                    and k.value.value is True
                    for k in node.keywords
                )
                assert safe, f"{path}:{node.lineno}: torch.load without weights_only=True"


def test_a_step_without_the_steps_it_reads_is_refused_before_any_work(
    tiny_pair: Any, tmp_path: Path
) -> None:
    from auditlens.audit.pipeline import run_step
    from auditlens.audit.steps import concern, diffing, discovery

    with pytest.raises(AuditlensError, match="run it first"):
        audit(tiny_pair, tmp_path / "a", budget=TINY, prompts=["hi"],
              steps=[layers.STEP, diffing.STEP, discovery.STEP])  # fmt: skip
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
    ctx = AuditContext(tiny_pair, tmp_path / "b", TINY, ["hi"], progress=False)
    with pytest.raises(AuditlensError, match="concern"):
        run_step(discovery.STEP, ctx)
    assert concern.STEP.name in discovery.STEP.needs
