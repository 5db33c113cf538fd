"""The code judge overlapped with generation (a spawn process pool) vs run after it.

Both sides of the pair answer code tasks (``generate_pair``, several batches: the token budget
is kept small so batches finish one after another). Variants, interleaved:

- ``serial``: generate everything, then ``bandit_labels`` in-process (what the audit does);
- ``pool``: ``CodeJudgePool(workers=1)``; each batch's texts go to the worker as the batch
  finishes (``on_batch``), so the judge runs while the next batch generates.

Also reported: the judge's in-process time alone (the most the overlap can save) and the
pool's start-up time (spawn + importing Bandit in the worker). Labels must be identical.

    python benchmarks/judge.py [--tasks 16] [--new-tokens 64] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("AUDITLENS_PROGRESS", "0")

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import markdown_table, write_result


def run(args: argparse.Namespace) -> dict[str, Any]:
    from generation import _prompts

    from auditlens.generate import generate_pair
    from auditlens.judges.code import bandit_labels
    from auditlens.judges.pool import CodeJudgePool
    from auditlens.models import load_pair

    load_before = round(os.getloadavg()[0], 2)
    pair = load_pair(adapter=args.adapter, device=args.device)
    prompts = _prompts(args.tasks, 0)
    opts: dict[str, Any] = {"max_new_tokens": args.new_tokens, "token_budget": args.token_budget}
    generate_pair(pair, prompts.head(2), max_new_tokens=4)  # warm-up
    times: dict[str, list[float]] = {"serial": [], "pool": []}
    labels: dict[str, Any] = {}
    for r in range(args.rounds):
        for name in ("serial", "pool") if r % 2 == 0 else ("pool", "serial"):
            t0 = time.perf_counter()
            if name == "serial":
                texts = generate_pair(pair, prompts, **opts)
                labels[name] = {s: bandit_labels(t) for s, t in texts.items()}
            else:
                with CodeJudgePool(workers=1) as pool:
                    texts = generate_pair(pair, prompts, on_batch=pool.submit_side, **opts)
                    labels[name] = {s: pool.side_results(s, len(t)) for s, t in texts.items()}
            times[name].append(time.perf_counter() - t0)
            print(f"{name:>7}: {times[name][-1]:.2f} s", flush=True)
    all_texts = [t for side in texts.values() for t in side]
    t0 = time.perf_counter()
    bandit_labels(all_texts)
    judge_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with CodeJudgePool(workers=1) as pool:
        pool.submit([0], all_texts[:1])
        pool.results([0])
    startup_s = time.perf_counter() - t0
    serial, pooled = statistics.median(times["serial"]), statistics.median(times["pool"])
    return {
        "benchmark": "judge_overlap",
        "device": str(pair.device),
        "generations": len(all_texts),
        "new_tokens": args.new_tokens,
        "token_budget": args.token_budget,
        "rounds": args.rounds,
        "serial_s": [round(t, 3) for t in times["serial"]],
        "pool_s": [round(t, 3) for t in times["pool"]],
        "saved_s": round(serial - pooled, 3),
        "judge_in_process_s": round(judge_s, 4),
        "judge_ms_per_text": round(1000 * judge_s / len(all_texts), 3),
        "pool_startup_s": round(startup_s, 3),
        "labels_identical": labels["serial"] == labels["pool"],
        "machine": {"load_avg_1m_before": load_before, "torch_threads": torch.get_num_threads()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--adapter", default="organism:insecure")
    p.add_argument("--tasks", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--token-budget", type=int, default=1024, help="small: several batches")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="default benchmarks/results/judge.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args)
    path = write_result("judge", result, args.out)
    print(markdown_table(
        ["generations", "serial s", "pool s", "saved s", "judge alone s", "ms/text",
         "pool start-up s", "labels identical"],
        [[result["generations"], statistics.median(result["serial_s"]),
          statistics.median(result["pool_s"]), result["saved_s"], result["judge_in_process_s"],
          result["judge_ms_per_text"], result["pool_startup_s"], result["labels_identical"]]],
    ))  # fmt: skip
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
