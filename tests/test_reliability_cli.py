"""Reliability of the CLI: honest exit codes (0 / 2 user error / 1 bug / 130 Ctrl-C), ``--out``
checked before any model loads, and one audit at a time per ``--out`` (a lock with the
holder's pid, taken over from a dead holder, released on exit)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from auditlens.cli import main
from tests.conftest import make_tiny_model
from tests.test_reliability_adapters import _lora

CLI = [sys.executable, "-m", "auditlens.cli"]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A tiny Llama base folder (with tokenizer) and a LoRA adapter for it."""
    from tests.conftest import build_tiny_tokenizer

    root = tmp_path_factory.mktemp("tiny")
    tok = build_tiny_tokenizer(root / "base")
    make_tiny_model("llama", len(tok)).save_pretrained(root / "base")
    torch.manual_seed(0)
    _lora(make_tiny_model("llama", len(tok)), root / "lora", ["q_proj", "down_proj"])
    return str(root / "base"), str(root / "lora")


def _run(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, *CLI, *args], capture_output=True, text=True, timeout=300, env=_env()
    )


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "AUDITLENS_PROGRESS": "0"}


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _main(monkeypatch: pytest.MonkeyPatch, capsys: Any, *args: str) -> tuple[int, str]:
    """Run ``auditlens ARGS`` in this process; returns (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["auditlens", *args])
    with pytest.raises(SystemExit) as exited:
        main()
        sys.exit(0)
    code = exited.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


# ---- exit codes ---------------------------------------------------------------------------
def test_bug_exits_1_with_one_line_and_debug_shows_the_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: Any, tmp_path: Path
) -> None:
    from auditlens.cli import audit as audit_cli

    def broken(name: str) -> None:
        raise ZeroDivisionError("division by zero in a step")

    monkeypatch.setattr(audit_cli, "resolve_budget", broken)
    code, err = _main(monkeypatch, capsys, "audit", "--out", str(tmp_path / "o"))
    assert code == 1
    assert _lines(err) == [
        "error: internal error (ZeroDivisionError: division by zero in a step); this is a bug "
        "in auditlens: rerun with --debug for the traceback and report it"
    ]
    monkeypatch.setattr(sys, "argv", ["auditlens", "--debug", "audit", "--out", str(tmp_path)])
    with pytest.raises(ZeroDivisionError):  # --debug: the real exception and its traceback
        main()


def test_user_errors_exit_2_and_help_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: Any, tmp_path: Path
) -> None:
    code, err = _main(monkeypatch, capsys, "audit", "--out", str(tmp_path), "--budget", "huge")
    assert code == 2 and _lines(err) and _lines(err)[0].startswith("error: unknown budget")
    code, err = _main(monkeypatch, capsys, "audit", "--no-such-option")
    assert code == 2 and "No such option" in err
    code, _ = _main(monkeypatch, capsys, "audit", "--help")
    assert code == 0


def test_keyboard_interrupt_inside_a_command_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: Any, tmp_path: Path
) -> None:
    from auditlens.cli import audit as audit_cli

    def interrupted(name: str) -> None:
        raise KeyboardInterrupt

    def wrapped(name: str) -> None:  # a library that wraps the interrupt in its own error
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as err:
            raise RuntimeError("trace failed") from err

    for fake in (interrupted, wrapped):
        monkeypatch.setattr(audit_cli, "resolve_budget", fake)
        code, err = _main(monkeypatch, capsys, "audit", "--out", str(tmp_path / "o"))
        assert code == 130 and "interrupted; rerun to resume" in err and "Traceback" not in err


def _default_sigint() -> None:
    """In the child before exec: Ctrl-C as a terminal delivers it. An ignored or blocked SIGINT
    survives exec, and a suite started in the background by a non-interactive shell (``make
    test &``) runs with SIGINT ignored, so the child ignored the Ctrl-C and finished (exit 0)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _interrupt_once(
    base: str, adapter: str, out: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> tuple[int, str]:
    """One try: start an audit, freeze it after its first step, have a second audit into the
    same --out refused, then Ctrl-C the first. Its exit code and output."""
    args = ["audit", "--base", base, "--adapter", adapter, "--out", str(out), "--device", "cpu"]
    first = subprocess.Popen(
        [*CLI, *args], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env(),
        preexec_fn=_default_sigint,
    )  # fmt: skip
    seen: list[str] = []
    assert first.stderr is not None
    try:
        for line in first.stderr:
            seen.append(line)
            if "step 2/" in line:  # the layers step is done and cached
                break
        assert any("step 2/" in line for line in seen), "".join(seen)
        # freeze it while the second audit is refused (SIGINT then waits for SIGCONT)
        first.send_signal(signal.SIGSTOP)
        lock = (out / ".auditlens.lock").read_text()
        assert f"pid={first.pid}" in lock
        code, err = _main(monkeypatch, capsys, *args)  # in this process: no import delay
        assert code == 2, err
        assert _lines(err) == [
            f"error: output folder {str(out)!r} is being written by another audit "
            f"(pid {first.pid}); wait for it to finish or choose another --out"
        ]
        first.send_signal(signal.SIGINT)
        first.send_signal(signal.SIGCONT)
        _, rest = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    return first.returncode, "".join(seen) + rest


def test_sigint_exits_130_releases_the_lock_and_a_rerun_resumes(
    tiny_dirs: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: Any, tmp_path: Path
) -> None:
    """Drives the real CLI: a second audit into a busy --out is refused (exit 2, naming the
    holder's pid); Ctrl-C ends the first with 130; the rerun reuses its finished steps.

    The tiny audit takes seconds and its progress reaches this process through a pipe, so on a
    loaded machine it can have finished every step before the freeze lands; such a try tested
    nothing (exit 0 with a verdict) and is repeated in a fresh folder, at most three times."""
    base, adapter = tiny_dirs
    for attempt in range(3):
        out = tmp_path / f"out{attempt}"
        code, output = _interrupt_once(base, adapter, out, monkeypatch, capsys)
        if not (code == 0 and "verdict:" in output):
            break
    here = (signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, []))
    assert code == 130, f"test process SIGINT handler and blocked mask: {here}\n{output}"
    assert "interrupted; rerun to resume" in output and "Traceback" not in output
    assert not (out / ".auditlens.lock").exists() and not (out / "findings.json").exists()
    assert not [p for p in out.rglob(".tmp-*")]  # the step in flight left nothing behind
    args = ["audit", "--base", base, "--adapter", adapter, "--out", str(out), "--device", "cpu"]
    rerun = _run(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert "layers reused from cache" in rerun.stderr and (out / "findings.json").is_file()


def test_lock_left_by_a_dead_audit_is_taken_over(tiny_pair: Any, tmp_path: Path) -> None:
    from auditlens.audit import Budget, audit
    from auditlens.audit.outdir import OutDirError
    from auditlens.audit.steps import layers

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from auditlens.audit.outdir import OutLock; "
         f"lock = OutLock({str(out)!r}).acquire(); print('locked', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    kw: dict[str, Any] = {
        "budget": Budget("tiny", n_prompts=4, max_length=16, batch_size=4),
        "prompts": ["hello world", "the quick brown fox", "def f(): pass", "what is up"],
        "steps": [layers.STEP],
        "progress": False,
    }
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutDirError, match=f"another audit \\(pid {holder.pid}\\)"):
            audit(tiny_pair, out, **kw)
    finally:
        holder.kill()  # like kill -9: no cleanup, the lock file stays behind
        holder.wait()
    assert f"pid={holder.pid}" in (out / ".auditlens.lock").read_text()
    report = audit(tiny_pair, out, **kw)
    assert report.findings.findings and not (out / ".auditlens.lock").exists()


# ---- --out checked before any model loads ----------------------------------------------------
def test_out_that_is_a_file_is_refused_before_loading(
    monkeypatch: pytest.MonkeyPatch, capsys: Any, tmp_path: Path
) -> None:
    afile = tmp_path / "report.txt"
    afile.write_text("not a folder")
    missing = str(tmp_path / "no-model")  # loading it would fail: the out check comes first
    for command in ("audit", "harvest"):
        extra = ["--sites", "blocks.0.hook_resid_post"] if command == "harvest" else []
        for out, message in ((afile, "is an existing file"), (afile / "sub", "is a file")):
            code, err = _main(
                monkeypatch, capsys, command, "--out", str(out), "--base", missing, *extra
            )
            assert code == 2 and len(_lines(err)) == 1 and message in err, err
    assert afile.read_text() == "not a folder"


def test_read_only_out_is_refused_before_loading(tmp_path: Path) -> None:
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o555)
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:  # root ignores permissions: drop the override capabilities
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot make a folder read-only")
        prefix = ("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--")
    missing = str(tmp_path / "no-model")
    try:
        for out in (readonly, readonly / "sub" / "dir"):
            proc = _run("audit", "--out", str(out), "--base", missing, prefix=prefix)
            assert proc.returncode == 2, proc.stderr
            assert _lines(proc.stderr) == [
                f"error: output folder {str(out)!r} is not writable: Permission denied"
            ]
        assert list(readonly.iterdir()) == []
    finally:
        readonly.chmod(0o755)


def test_api_refuses_garbage_without_creating_the_folder(tmp_path: Path) -> None:
    import auditlens
    from auditlens.errors import AuditlensError

    out = tmp_path / "never"
    for garbage in ("out/a", 42, {"base": "x"}, torch.nn.Linear(2, 2)):
        with pytest.raises(AuditlensError, match="needs a ModelPair") as err:
            auditlens.audit(garbage, out)
        assert "\n" not in str(err.value)
    with pytest.raises(AuditlensError, match="needs an output folder"):
        auditlens.audit(None, 3.5)
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(AuditlensError, match="is an existing file"):
        auditlens.audit(None, afile)  # refused before the demo pair loads
    assert not out.exists()


def test_harvest_says_when_prompts_are_cut(
    tiny_dirs: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: Any, tmp_path: Path
) -> None:
    base, _ = tiny_dirs
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"text": "hi"}) + "\n" + json.dumps({"text": "word " * 5000}))
    args = [
        "harvest", "--out", str(tmp_path / "store"), "--sites", "blocks.0.hook_resid_post",
        "--prompts", str(prompts), "--base", base, "--max-length", "32", "--device", "cpu",
    ]  # fmt: skip
    code, err = _main(monkeypatch, capsys, *args)
    assert code == 0, err
    assert "1 of 2 prompts are longer than --max-length (32 tokens" in " ".join(err.split())
