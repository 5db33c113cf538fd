"""Shared helpers for benchmarks: machine description, result files and markdown tables."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "RESULTS",
    "Streamed",
    "cpu_name",
    "machine",
    "markdown_table",
    "run_streaming",
    "write_result",
]

RESULTS = Path(__file__).parent / "results"


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "date": time.strftime("%Y-%m-%d"),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_result(name: str, result: dict[str, Any], out: str | Path | None = None) -> Path:
    """Write ``out`` (default ``benchmarks/results/NAME.json``) with the machine description.

    ``result`` may carry its own ``machine`` block (measured before the work started); keys
    it lacks are filled from :func:`machine`.
    """
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    facts = {**machine(), **result.get("machine", {})}
    path.write_text(json.dumps({**result, "machine": facts}, indent=1) + "\n")
    return path


def markdown_table(columns: list[str], rows: list[list[Any]]) -> str:
    """A GitHub markdown table."""

    def cell(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


class Streamed:
    """What :func:`run_streaming` saw: exit code (None on timeout), wall time, output tail."""

    def __init__(self, returncode: int | None, wall_s: float, tail: list[str]) -> None:
        self.returncode = returncode
        self.wall_s = wall_s
        self.tail = tail

    @property
    def last_error(self) -> str:
        """The last non-empty output line (usually the exception), or a timeout note."""
        if self.returncode is None:
            return f"timed out after {self.wall_s:.0f} s"
        lines = [line for line in self.tail if line.strip()]
        return lines[-1].strip() if lines else f"exit code {self.returncode}"


def run_streaming(
    cmd: list[str],
    *,
    timeout: float,
    prefix: str = "",
    env: dict[str, str] | None = None,
    keep: int = 40,
) -> Streamed:
    """Run ``cmd``, echoing its merged output line by line (with ``prefix``) as it comes.

    The child gets its own process group, which is killed after ``timeout`` seconds.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, start_new_session=True,
    )  # fmt: skip
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.start()
    tail: deque[str] = deque(maxlen=keep)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            print(f"{prefix}{line}", flush=True)
        proc.wait()
    finally:
        timer.cancel()
    code = None if timed_out.is_set() else proc.returncode
    return Streamed(code, time.perf_counter() - t0, list(tail))
