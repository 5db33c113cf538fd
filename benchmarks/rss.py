"""Peak memory (RSS) of a harvest of 1x and 10x the prompts: the store streams to disk.

    python benchmarks/rss.py [--prompts N] [--factor F] [--adapter organism:insecure] [--out FILE]

Each harvest runs in a fresh subprocess (embedded base vs ``--adapter`` at a few residual
sites, written to a temporary store). It loads the pair, runs one warm-up forward pass (the
weights are memory-mapped, so they only become resident when first used), then harvests.
It reports the process's peak RSS (``getrusage`` ``ru_maxrss``), the RSS after the warm-up,
and the harvest's own peak above that (``VmHWM`` after resetting it through
``/proc/self/clear_refs``; Linux only). Printed: both process peaks and their ratio
(target ≤ 1.2, the same bound as ``tests/test_harvest.py``), the bytes each run stored, and
the *retained fraction*: growth of the harvest's peak divided by growth of the stored bytes
(0 = fully streamed, 1 = everything held in memory).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import markdown_table, write_result

SITES = ["blocks.8.hook_resid_post", "blocks.15.hook_resid_post", "blocks.22.hook_resid_post"]
TARGET = 1.2


def _status_bytes(field: str) -> int | None:
    """``VmRSS`` / ``VmHWM`` of this process from ``/proc/self/status``, in bytes."""
    try:
        found = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    except OSError:
        return None
    return int(found.group(1)) * 1024 if found else None


def _reset_peak() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS (Linux ≥ 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child(args: argparse.Namespace) -> None:
    """Harvest ``args.prompts`` prompts into ``args.store`` and print one JSON line."""
    os.environ["AUDITLENS_PROGRESS"] = "0"
    import psutil
    import torch
    from harvest import plain_forward

    from auditlens.datasets import PromptSet, load_prompts
    from auditlens.harvest import harvest
    from auditlens.models import load_pair

    if args.threads:
        torch.set_num_threads(args.threads)
    pair = load_pair(adapter=args.adapter, device=args.device)
    base = load_prompts("generic_chat")
    repeats = args.prompts // len(base) + 1
    prompts = PromptSet(f"generic_chat x{args.prompts}", (base.prompts * repeats)[: args.prompts])
    after_load = psutil.Process().memory_info().rss
    plain_forward(pair, prompts.head(args.batch_size), args.batch_size, args.max_length)
    after_warmup = psutil.Process().memory_info().rss
    reset = _reset_peak()
    t0 = time.perf_counter()
    store = harvest(
        pair, prompts, args.sites.split(","), args.store, batch_size=args.batch_size,
        shard_prompts=args.shard_prompts, max_length=args.max_length, progress=False,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    stored = sum(f.stat().st_size for f in Path(args.store).rglob("*.safetensors"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    harvest_peak = _status_bytes("VmHWM") if reset else None
    print(
        json.dumps(
            {
                "prompts": args.prompts,
                "tokens": store.n_tokens,
                "stored_bytes": stored,
                "rss_after_load_bytes": after_load,
                "rss_after_warmup_bytes": after_warmup,
                "harvest_peak_rss_bytes": harvest_peak,
                "peak_rss_bytes": peak,
                "harvest_seconds": round(seconds, 2),
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


def measure(args: argparse.Namespace, n_prompts: int, tmp: Path) -> dict[str, Any]:
    """Run one harvest in a fresh interpreter and return its report."""
    cmd = [
        sys.executable, __file__, "--child", "--prompts", str(n_prompts),
        "--store", str(tmp / f"store{n_prompts}"), "--sites", args.sites,
        "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
        "--shard-prompts", str(args.shard_prompts), "--threads", str(args.threads or 0),
        "--device", args.device,
    ]  # fmt: skip
    if args.adapter:
        cmd += ["--adapter", args.adapter]
    print(f"rss: harvesting {n_prompts} prompts in a fresh process ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"rss child ({n_prompts} prompts) failed:\n{proc.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"rss: {n_prompts} prompts, {report['tokens']} tokens, "
        f"peak {report['peak_rss_bytes'] / 2**20:.0f} MiB, "
        f"stored {report['stored_bytes'] / 2**20:.0f} MiB, {report['harvest_seconds']} s",
        flush=True,
    )
    return report


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = round(os.getloadavg()[0], 2)
    tmp = Path(tempfile.mkdtemp(prefix="bench-rss-"))
    try:
        small = measure(args, args.prompts, tmp)
        large = measure(args, args.prompts * args.factor, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = large["peak_rss_bytes"] / small["peak_rss_bytes"]
    stored_growth = large["stored_bytes"] - small["stored_bytes"]
    key = "harvest_peak_rss_bytes" if small["harvest_peak_rss_bytes"] else "peak_rss_bytes"
    retained = (large[key] - small[key]) / max(stored_growth, 1)
    return {
        "benchmark": "harvest_peak_rss",
        "pair": f"smollm2-135m-instruct vs {args.adapter or 'itself'}",
        "sites": args.sites.split(","),
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "shard_prompts": args.shard_prompts,
        "factor": args.factor,
        "small": small,
        "large": large,
        "peak_ratio": round(ratio, 3),
        "harvest_working_set_bytes": [
            r["harvest_peak_rss_bytes"] - r["rss_after_warmup_bytes"]
            for r in (small, large)
            if r["harvest_peak_rss_bytes"]
        ],
        "retained_fraction": round(retained, 3),
        "target": TARGET,
        "met": ratio <= TARGET,
        "machine": {"load_avg_1m_before": load_before, "torch_threads": small["torch_threads"]},
    }


def table(result: dict[str, Any]) -> str:
    mib = 2**20
    rows = [
        [
            f"{r['prompts']} prompts",
            r["tokens"],
            f"{r['stored_bytes'] / mib:.0f}",
            f"{r['rss_after_load_bytes'] / mib:.0f}",
            f"{r['rss_after_warmup_bytes'] / mib:.0f}",
            f"{(r['harvest_peak_rss_bytes'] or 0) / mib:.0f}",
            f"{r['peak_rss_bytes'] / mib:.0f}",
        ]
        for r in (result["small"], result["large"])
    ]
    columns = ["harvest", "tokens", "stored MiB", "RSS after load MiB", "after warm-up MiB"]
    return markdown_table([*columns, "harvest peak MiB", "process peak MiB"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32, help="prompts of the 1x run")
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--adapter", default="organism:insecure")
    parser.add_argument("--sites", default=",".join(SITES))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--shard-prompts", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (RSS is host memory)")
    parser.add_argument("--out", default=None, help="default benchmarks/results/rss.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--store", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.adapter in ("", "none"):
        args.adapter = None
    if args.child:
        child(args)
        return
    result = run(args)
    path = write_result("rss", result, args.out)
    print(table(result))
    print(
        f"peak ratio {result['peak_ratio']:.3f} (target ≤ {TARGET}); retained fraction "
        f"{result['retained_fraction']:.3f}; wrote {path}"
    )


if __name__ == "__main__":
    main()
