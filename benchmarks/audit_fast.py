"""End-to-end wall time of ``auditlens audit --budget fast`` on the embedded default pair.

    python benchmarks/audit_fast.py [--out FILE] [--keep DIR] [--tiny]

Runs the installed CLI (``auditlens audit --out DIR --budget fast``, base vs the shipped
``organism:insecure``) in a subprocess with a fresh output folder and a fresh artifact cache
(``AUDITLENS_ARTIFACTS``), so nothing is reused, and records the wall time (interpreter start,
model loading, every step, report) and the per-step times from ``DIR/findings.json``
(``timings_s``). Target: ≤ 600 s.

``--tiny`` is a smoke run: the same CLI command, run in a child interpreter with the
``fast`` budget shrunk to a few prompts, tasks and steps. Its time says nothing about the
target.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import markdown_table, run_streaming, write_result

TARGET_S = 600.0
TINY = {
    "n_prompts": 4, "max_length": 32, "batch_size": 4, "n_code_tasks": 2, "n_questions": 2,
    "max_new_tokens": 8, "crosscoder_steps": 5, "crosscoder_latents": 64, "melbo_vectors": 2,
    "melbo_steps": 2, "adversary_prompts": 2,
}  # fmt: skip


def tiny_cli(out: str) -> None:
    """Run ``auditlens audit --out OUT --budget fast`` here with a shrunken ``fast`` budget."""
    from auditlens import cli
    from auditlens.audit import contract

    names = {f.name for f in dataclasses.fields(contract.Budget)}
    fast = contract.BUDGETS["fast"]
    contract.BUDGETS["fast"] = dataclasses.replace(
        fast, **{k: v for k, v in TINY.items() if k in names}
    )
    sys.argv = ["auditlens", "audit", "--out", out, "--budget", "fast"]
    cli.main()


def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "auditlens"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("auditlens")
    if found is None:
        raise SystemExit("the auditlens command is not installed (run `make setup`)")
    return [found]


def run(out_dir: Path, tiny: bool, timeout: float) -> dict[str, Any]:
    load_before = round(os.getloadavg()[0], 2)
    if tiny:
        cmd = [sys.executable, __file__, "--tiny-child", str(out_dir)]
    else:
        cmd = [*_cli(), "audit", "--out", str(out_dir), "--budget", "fast"]
    print(f"audit_fast: {' '.join(cmd)}", flush=True)
    # a fresh artifact cache: the timing includes training the crosscoder, ADL and MELBO
    cache = {"AUDITLENS_ARTIFACTS": str(out_dir / "artifact_cache")}
    done = run_streaming(cmd, timeout=timeout, env=cache)
    returncode, wall = done.returncode, done.wall_s
    result: dict[str, Any] = {
        "benchmark": "audit_fast_wall_time",
        "command": "auditlens audit --out DIR --budget fast" + (" (tiny budget)" if tiny else ""),
        "tiny": tiny,
        "returncode": returncode,
        "wall_s": round(wall, 1),
        "target_s": TARGET_S,
        "machine": {"load_avg_1m_before": load_before},
    }
    findings_path = out_dir / "findings.json"
    if returncode != 0 or not findings_path.is_file():
        why = "timed out" if returncode is None else f"exited with {returncode}"
        result["error"] = f"the audit {why} after {wall:.0f} s: {done.last_error}"
        result["met"] = False
        return result
    findings = json.loads(findings_path.read_text())
    ft = findings["finetuned"]
    pair = f"{findings['base']['name']} vs {ft['name']}"
    if ft.get("adapter") and ft["adapter"] not in ft["name"]:
        pair += f" + {ft['adapter']}"
    steps = {k: float(v) for k, v in findings.get("timings_s", {}).items()}
    result.update(
        {
            "steps_s": steps,
            "outside_steps_s": round(wall - sum(steps.values()), 1),
            "n_findings": len(findings.get("findings", [])),
            "budget": findings.get("config", {}).get("budget"),
            "pair": pair,
            "score": findings.get("score"),
            "verdict": findings.get("verdict"),
            "met": (not tiny) and wall <= TARGET_S,
        }
    )  # fmt: skip
    return result


def table(result: dict[str, Any]) -> str:
    rows = [[name, f"{s:.1f}"] for name, s in result.get("steps_s", {}).items()]
    rows.append(["outside the steps (start-up, loading, report)", result.get("outside_steps_s")])
    rows.append(["**total wall time**", f"**{result['wall_s']:.1f}**"])
    return markdown_table(["part", "seconds"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="default benchmarks/results/audit_fast.json")
    parser.add_argument("--keep", default=None, help="audit output folder to keep (fresh)")
    parser.add_argument("--tiny", action="store_true", help="smoke run with a tiny budget")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--tiny-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tiny_child:
        tiny_cli(args.tiny_child)
        return
    if args.keep:
        out_dir = Path(args.keep)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        result = run(out_dir, args.tiny, args.timeout)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
            result = run(Path(tmp) / "audit", args.tiny, args.timeout)
    path = write_result("audit_fast", result, args.out)
    if "error" in result:
        print(f"audit_fast: FAILED: {result['error']}; wrote {path}", flush=True)
        raise SystemExit(1)
    print(table(result))
    print(f"wall {result['wall_s']:.1f} s (target ≤ {TARGET_S:.0f} s); wrote {path}")


if __name__ == "__main__":
    main()
