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

from auditlens.audit import Budget, audit
from auditlens.audit.steps import layers

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
