"""Memory plan for large pairs, computed from the model shapes (nothing is loaded or timed).

For Llama-3-8B- and Llama-3-70B-shaped pairs (and the SmolLM2 shapes for scale) it computes,
in bf16 weights and fp32 statistics: the weights of a full-model pair vs a base + LoRA adapter
pair (which shares the base weights), a merged fine-tuned copy for generation, the KV cache of
a generation batch, the forward activations and logits of a harvest batch, the stored
activations per million tokens, and a BatchTopK crosscoder with its Adam state. With
``--device cuda`` it also says whether each plan fits the free memory of this device.

    python benchmarks/memory_plan.py                    # markdown table (docs/scaling.md)
    python benchmarks/memory_plan.py --device cuda      # plus: does it fit this GPU?
    python benchmarks/memory_plan.py --json plan.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import markdown_table

GIB = 2**30
PROJECTIONS = 7  # q, k, v, o, gate, up, down


@dataclass(frozen=True)
class Shape:
    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def params(self) -> int:
        kv = self.kv_heads * self.head_dim
        attn = self.hidden * (2 * self.hidden + 2 * kv)
        mlp = 3 * self.hidden * self.intermediate
        norms = 2 * self.hidden
        embed = self.vocab * self.hidden * (1 if self.tied else 2)
        return self.layers * (attn + mlp + norms) + embed + self.hidden

    def lora_params(self, rank: int) -> int:
        """A rank-``rank`` LoRA on all seven projections of every layer."""
        kv = self.kv_heads * self.head_dim
        h, i = self.hidden, self.intermediate
        shapes = [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]
        return self.layers * sum(rank * (a + b) for a, b in shapes)

    def kv_bytes_per_token(self, itemsize: int = 2) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * itemsize


SHAPES = [
    Shape("SmolLM2-135M", 576, 1536, 30, 9, 3, 49152, True),
    Shape("SmolLM2-1.7B", 2048, 8192, 24, 32, 32, 49152, True),
    Shape("Llama-3-8B", 4096, 14336, 32, 32, 8, 128256, False),
    Shape("Llama-3-70B", 8192, 28672, 80, 64, 8, 128256, False),
]


def plan(
    shape: Shape,
    *,
    rank: int = 16,
    gen_rows: int = 128,
    gen_tokens: int = 256 + 128,
    harvest_tokens: int = 16 * 512,
    latents: int = 32768,
    crosscoder_batch: int = 4096,
) -> dict[str, Any]:
    """Bytes of each part for one shape (bf16 weights and activations, fp32 statistics)."""
    weights = shape.params * 2
    lora = shape.lora_params(rank) * 2
    kv = shape.kv_bytes_per_token() * gen_rows * gen_tokens
    per_token_act = (6 * shape.hidden + 3 * shape.intermediate) * 2
    harvest_act = harvest_tokens * per_token_act
    harvest_logits = 2 * harvest_tokens * shape.vocab * 4  # both sides, fp32 for the KL
    stored_per_million = 10**6 * 2 * shape.hidden * 2  # one site, both sides, bf16
    cc_params = 2 * 2 * shape.hidden * latents  # encoder + decoder over both sides
    crosscoder = cc_params * 4 * 4  # fp32 weights, grads, Adam m and v
    cc_batch = crosscoder_batch * latents * 4 * 2  # pre-activations and their gradient
    return {
        "shape": shape.name,
        "params_b": shape.params / 1e9,
        "weights_gib": weights / GIB,
        "full_pair_gib": 2 * weights / GIB,
        "adapter_pair_gib": (weights + lora) / GIB,
        "lora_gib": lora / GIB,
        "merged_copy_gib": weights / GIB,
        "kv_per_token_kib": shape.kv_bytes_per_token() / 1024,
        "generation_kv_gib": kv / GIB,
        "harvest_activations_gib": harvest_act / GIB,
        "harvest_logits_gib": harvest_logits / GIB,
        "stored_per_million_tokens_gib": stored_per_million / GIB,
        "crosscoder_state_gib": crosscoder / GIB,
        "crosscoder_batch_gib": cc_batch / GIB,
        "settings": {
            "lora_rank": rank,
            "gen_rows": gen_rows,
            "gen_tokens": gen_tokens,
            "harvest_tokens": harvest_tokens,
            "latents": latents,
            "crosscoder_batch": crosscoder_batch,
        },
    }


def peak_gib(p: dict[str, Any], *, adapter: bool, merged: bool) -> float:
    """The largest moment of an audit: weights (+ merged copy) and the bigger working set."""
    weights = p["adapter_pair_gib"] if adapter else p["full_pair_gib"]
    if merged:
        weights += p["merged_copy_gib"]
    work = max(
        p["generation_kv_gib"],
        p["harvest_activations_gib"] + p["harvest_logits_gib"],
        p["crosscoder_state_gib"] + p["crosscoder_batch_gib"],
    )
    return float(weights + work)


def table(plans: list[dict[str, Any]], free_gib: float | None = None) -> str:
    rows = []
    for p in plans:
        row = [
            p["shape"], f"{p['params_b']:.2f}", f"{p['weights_gib']:.1f}",
            f"{p['full_pair_gib']:.1f}", f"{p['adapter_pair_gib']:.1f} (+{p['lora_gib']:.2f})",
            f"{p['generation_kv_gib']:.1f}",
            f"{p['harvest_activations_gib']:.1f} + {p['harvest_logits_gib']:.1f}",
            f"{p['stored_per_million_tokens_gib']:.1f}",
            f"{p['crosscoder_state_gib']:.1f} + {p['crosscoder_batch_gib']:.1f}",
            f"{peak_gib(p, adapter=True, merged=False):.0f}",
            f"{peak_gib(p, adapter=False, merged=False):.0f}",
        ]  # fmt: skip
        if free_gib is not None:
            row.append("yes" if peak_gib(p, adapter=True, merged=False) <= free_gib else "no")
        rows.append(row)
    cols = ["shape", "params (B)", "weights", "full pair", "adapter pair (+LoRA)",
            "generation KV", "harvest act. + logits", "stored / 1M tok", "crosscoder + batch",
            "peak, adapter pair", "peak, full pair"]  # fmt: skip
    if free_gib is not None:
        cols.append(f"adapter pair fits {free_gib:.0f} GiB?")
    s = plans[0]["settings"]
    note = (
        f"GiB, computed from the shapes (not measured). bf16 weights; LoRA rank {s['lora_rank']} "
        f"on all 7 projections; generation KV for {s['gen_rows']} rows × {s['gen_tokens']} "
        f"tokens; harvest batch of {s['harvest_tokens']} tokens (activations in bf16, logits of "
        f"both sides in fp32 for the KL); stored: one site, both sides, bf16; crosscoder with "
        f"{s['latents']} latents over both sides, fp32 weights + grads + Adam, batch "
        f"{s['crosscoder_batch']}. Peak = pair weights + the largest working set."
    )
    return markdown_table(cols, rows) + "\n\n" + note


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cuda: also check the plans against it")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--latents", type=int, default=32768)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    plans = [plan(s, rank=args.rank, latents=args.latents) for s in SHAPES]
    free = None
    if args.device.startswith("cuda"):
        import torch

        free = torch.cuda.mem_get_info()[0] / GIB
    print(table(plans, free))
    if args.json:
        Path(args.json).write_text(json.dumps(plans, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
