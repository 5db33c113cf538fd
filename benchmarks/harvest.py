"""Harvest throughput vs two plain forward passes over the same batches (same run).

    python benchmarks/harvest.py [--prompts N] [--batch-size B] [--max-length L] [--rounds R]
                                 [--device cpu|cuda] [--out FILE]

Prints tokens/s for harvesting both models at 4 sites (written to a safetensors store),
tokens/s for two plain HF forward passes over the same batches, and their ratio.
Target: ratio >= 0.9 on CPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import markdown_table, write_result

from auditlens.datasets import MaskSpec, iter_token_batches, load_prompts
from auditlens.harvest import harvest
from auditlens.models import load_pair

SITES = [
    "blocks.7.hook_resid_post",
    "blocks.15.hook_mlp_out",
    "blocks.15.hook_resid_post",
    "blocks.22.hook_resid_post",
]


def plain_forward(pair, prompts, batch_size: int, max_length: int) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """Two plain forward passes (base, fine-tuned) per batch; returns (tokens, seconds)."""
    sync = torch.cuda.synchronize if pair.device.type == "cuda" else (lambda: None)
    sync()
    tokens, t0 = 0, time.perf_counter()
    for batch in iter_token_batches(
        prompts, pair.tokenizer, batch_size=batch_size, mask=MaskSpec(), max_length=max_length
    ):
        ids, attn = batch.input_ids.to(pair.device), batch.attention_mask.to(pair.device)
        for side in pair.sides:
            with side.active(), torch.no_grad():
                side.hf(input_ids=ids, attention_mask=attn)
        tokens += int(batch.attention_mask.sum())
    sync()
    return tokens, time.perf_counter() - t0


def run(
    n_prompts: int,
    batch_size: int,
    max_length: int,
    rounds: int,
    adapter: str | None,
    device: str | None = None,
) -> dict[str, object]:
    load_before = round(os.getloadavg()[0], 2)
    pair = load_pair(adapter=adapter, device=device)
    prompts = load_prompts("generic_chat")
    prompts = type(prompts)(
        prompts.name, (prompts.prompts * (n_prompts // len(prompts) + 1))[:n_prompts]
    )
    plain_tps, harvest_tps = [], []
    plain_forward(pair, prompts.head(batch_size), batch_size, max_length)  # warm-up
    for _ in range(rounds):
        tokens, secs = plain_forward(pair, prompts, batch_size, max_length)
        plain_tps.append(tokens / secs)
        tmp = Path(tempfile.mkdtemp(prefix="bench-harvest-"))
        t0 = time.perf_counter()
        store = harvest(pair, prompts, SITES, tmp, batch_size=batch_size, max_length=max_length,
                        progress=False)  # fmt: skip
        secs = time.perf_counter() - t0
        harvest_tps.append(store.n_tokens / secs)
        shutil.rmtree(tmp)
    plain, harv = max(plain_tps), max(harvest_tps)
    return {
        "pair": f"smollm2-135m-instruct vs {adapter or 'itself'}",
        "sites": SITES,
        "n_prompts": n_prompts,
        "tokens": tokens,
        "batch_size": batch_size,
        "max_length": max_length,
        "rounds": rounds,
        "device": str(pair.device),
        "plain_tokens_per_s": round(plain, 1),
        "harvest_tokens_per_s": round(harv, 1),
        "ratio": round(harv / plain, 3),
        "target": 0.9,
        "machine": {"load_avg_1m_before": load_before},
    }


def table(result: dict) -> str:  # type: ignore[type-arg]
    return markdown_table(
        ["pair", "tokens", "plain 2× forward tok/s", "harvest 4 sites tok/s", "ratio", "target"],
        [[result["pair"], result["tokens"], result["plain_tokens_per_s"],
          result["harvest_tokens_per_s"], result["ratio"], "≥ 0.9"]],
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--out", default=None, help="default benchmarks/results/harvest.json")
    args = parser.parse_args()
    result = run(
        args.prompts, args.batch_size, args.max_length, args.rounds, args.adapter, args.device
    )
    write_result("harvest", result, args.out)
    print(table(result))


if __name__ == "__main__":
    main()
