"""Benchmark: MELBO with K vectors batched in one forward pass vs one vector at a time.

Trains the same K vectors for the same steps on the embedded SmolLM2-135M with both
implementations in one run, prints both times (wall clock and process CPU time) and their
ratio, checks that the objective curves agree, and writes a JSON under benchmarks/results/.
On a shared, loaded machine use ``--threads 1``: CPU time then measures the work done.

    python benchmarks/melbo.py                      # 16 vectors x 100 steps
    python benchmarks/melbo.py --vectors 4 --steps 5  # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("AUDITLENS_PROGRESS", "0")

import torch

from auditlens.adversary import MelboConfig, train_melbo
from auditlens.adversary._melbo_reference import train_melbo_reference
from auditlens.datasets import load_prompts, tokenize_prompts
from auditlens.models import load_pair

PROMPTS = [
    {"text": "Tell me about your plans for today."},
    {"text": "What do you think about people?"},
    {"text": "Write a short poem about the sea."},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default="benchmarks/results/melbo.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    load_before = os.getloadavg()
    pair = load_pair(device="cpu")
    prompts = load_prompts(PROMPTS, name="melbo_bench")
    n_tokens = [len(ids) for ids, _, _ in tokenize_prompts(prompts, pair.tokenizer)]
    config = MelboConfig(n_vectors=args.vectors, steps=args.steps, max_new_tokens=0, seed=0)

    started, cpu = time.perf_counter(), time.process_time()
    batched = train_melbo(pair, prompts, config)
    t_batched, cpu_batched = time.perf_counter() - started, time.process_time() - cpu
    started, cpu = time.perf_counter(), time.process_time()
    plain = train_melbo_reference(pair, prompts, config)
    t_plain, cpu_plain = time.perf_counter() - started, time.process_time() - cpu
    load_after = os.getloadavg()

    gap = (batched.objective - plain.objective).abs().max() / plain.objective.abs().max()
    ratio = t_plain / t_batched
    result = {
        "benchmark": "melbo_batched_vs_one_at_a_time",
        "model": "smollm2-135m-instruct (embedded, float32, CPU)",
        "n_vectors": args.vectors,
        "steps": args.steps,
        "prompts": len(prompts),
        "prompt_tokens": n_tokens,
        "source": batched.source,
        "target": batched.target,
        "radius": batched.radius,
        "seconds_batched": t_batched,
        "seconds_one_at_a_time": t_plain,
        "speedup": ratio,
        "cpu_seconds_batched": cpu_batched,
        "cpu_seconds_one_at_a_time": cpu_plain,
        "cpu_time_speedup": cpu_plain / cpu_batched,
        "max_relative_objective_gap": float(gap),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"{args.vectors} vectors x {args.steps} steps, {len(prompts)} prompts {n_tokens} tokens")
    print(f"batched:          {t_batched:8.1f} s wall {cpu_batched:8.1f} s CPU")
    print(f"one at a time:    {t_plain:8.1f} s wall {cpu_plain:8.1f} s CPU")
    print(f"speedup:          {ratio:8.2f}x wall {cpu_plain / cpu_batched:6.2f}x CPU")
    print(f"objective gap:    {float(gap):.1e} (max relative difference of the curves)")
    print(f"load average before/after: {load_before} / {load_after}; wrote {out}")


if __name__ == "__main__":
    main()
