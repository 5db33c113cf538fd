"""Generation: the old path (transformers' generate, batches of 8, one side at a time) vs the new.

The workload is the fast audit's behaviour step: both sides of the pair (the embedded model
and the shipped ``insecure`` adapter) answer the held-out code tasks and free-form questions,
greedy, ``--max-new-tokens`` each. Variants, run interleaved in one process (A, B, C, C, B, A
for two rounds) so machine load hits each alike:

- ``old``: ``generate(side, engine="hf", batch_size=8)`` for the base, then the fine-tuned
  side (what the audit does today);
- ``fast8``: the new decode loop with the same batches (preallocated KV cache only);
- ``pair_auto``: ``generate_pair(pair, batch_size="auto")``: both sides' rows in the same
  batches (LoRA per row), sorted by length, sized by the token budget, finished rows retired;
- ``pair_auto_prefix``: ``pair_auto`` with ``share_prefix=True`` (the chat template's system
  prompt, the same for every row, is computed once per batch and side);
- ``merged_ft`` (not in the default list): the fine-tuned side only, from a copy with the
  adapter merged into the weights (``models.merged_finetuned``), ``batch_size="auto"``; its
  base texts are ``old``'s. Merging changes rounding, so texts may change: the table counts
  them and shows what the behaviour statistic (Bandit insecure rate on the code tasks,
  McNemar z fine-tuned vs base) becomes.

``--workload adversary`` times the adversary step's steered generations instead: 8 code
tasks under ``1 + 2K`` steering variants (none, K vectors, K random controls of the same
norm at the middle layer's residual stream; K = ``--vectors``) on both sides:

- ``old``: for each side and variant, ``with steer(...)``: ``generate(engine="hf",
  batch_size=8)`` (what the adversary does today);
- ``variants_auto``: ``generate_variants(pair, prompts, steers, batch_size="auto")``: every
  side, variant and prompt in shared batches with per-row vectors;
- ``variants_auto_prefix``: the same with ``share_prefix=True``.

Every variant's texts are compared with ``old`` (greedy: they must be identical). Writes
``benchmarks/results/generation.json`` (``generation_adversary.json``) and prints a table.

    python benchmarks/generation.py                 # 32 tasks + 8 questions, 96 tokens, 1 round
    python benchmarks/generation.py --workload adversary
    python benchmarks/generation.py --quick         # 6 prompts x 16 tokens (smoke run)
    python benchmarks/generation.py --device cuda
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

VARIANTS = ("old", "fast8", "pair_auto", "pair_auto_prefix")
ADVERSARY_VARIANTS = ("old", "variants_auto", "variants_auto_prefix")


def _steers(pair: Any, k: int, norm: float) -> list[Any]:
    """None, K random vectors and K more (the controls), all of ``norm``, at the middle layer."""
    from auditlens.stats import random_directions
    from auditlens.steering import Steer

    site = f"blocks.{pair.n_layers // 2}.hook_resid_post"
    vectors = random_directions(2 * k, pair.d_model, norm, seed=0)
    return [None] + [Steer(site, v) for v in vectors]


def run_adversary_variant(name: str, pair: Any, prompts: Any, steers: list[Any], max_new: int,
                          budget: int | None) -> dict:  # type: ignore[type-arg]  # fmt: skip
    from auditlens.generate import generate, generate_variants
    from auditlens.steering import steer

    sync = torch.cuda.synchronize if pair.device.type == "cuda" else (lambda: None)
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    texts: dict[str, list[str]] = {}
    if name == "old":
        for side in pair.sides:
            for k, spec in enumerate(steers):
                opts: dict[str, Any] = {"max_new_tokens": max_new, "engine": "hf", "batch_size": 8}
                if spec is None:
                    texts[f"{side.name}/{k}"] = generate(side, pair.tokenizer, prompts, **opts)
                    continue
                with steer(side, pair.arch, spec):
                    texts[f"{side.name}/{k}"] = generate(side, pair.tokenizer, prompts, **opts)
    elif name in ("variants_auto", "variants_auto_prefix"):
        out = generate_variants(pair, prompts, steers, max_new_tokens=max_new,
                                batch_size="auto", token_budget=budget,
                                share_prefix=name.endswith("_prefix"))  # fmt: skip
        texts = {f"{side}/{k}": t for side, rows in out.items() for k, t in enumerate(rows)}
    else:
        raise SystemExit(f"unknown adversary variant {name}")
    sync()
    return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "texts": texts}


def _prompts(n_tasks: int, n_questions: int) -> Any:
    from auditlens.datasets import PromptSet
    from auditlens.generate import chat_prompt
    from auditlens.testbed.questions import free_form_questions
    from auditlens.testbed.tasks import eval_tasks

    in_dist, held_out = eval_tasks(seed=0, n_id=(n_tasks + 1) // 2, n_ood=n_tasks // 2)
    questions = free_form_questions()[:n_questions]
    items = [chat_prompt(t.request) for t in in_dist + held_out]
    items += [chat_prompt(q.text) for q in questions]
    return PromptSet("behaviour_workload", tuple(items))


def run_variant(name: str, pair: Any, prompts: Any, max_new: int, budget: int | None) -> dict:  # type: ignore[type-arg]
    from auditlens.generate import generate, generate_pair

    sync = torch.cuda.synchronize if pair.device.type == "cuda" else (lambda: None)
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    if name == "old":
        texts = {
            s.name: generate(
                s, pair.tokenizer, prompts, max_new_tokens=max_new, engine="hf", batch_size=8
            )
            for s in pair.sides
        }
    elif name == "fast8":
        texts = {
            s.name: generate(s, pair.tokenizer, prompts, max_new_tokens=max_new, batch_size=8)
            for s in pair.sides
        }
    elif name == "merged_ft":
        from auditlens.models import merged_finetuned

        side = merged_finetuned(pair)
        if side is None:
            raise SystemExit("not enough memory for a merged copy")
        texts = {"finetuned": generate(side, pair.tokenizer, prompts, max_new_tokens=max_new,
                                       batch_size="auto", token_budget=budget)}  # fmt: skip
    elif name in ("pair_auto", "pair_auto_prefix"):
        texts = generate_pair(
            pair, prompts, max_new_tokens=max_new, batch_size="auto", token_budget=budget,
            share_prefix=name.endswith("_prefix"),
        )  # fmt: skip
    else:
        raise SystemExit(f"unknown variant {name}")
    sync()
    return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "texts": texts}


def _statistic(texts: dict[str, list[str]], n_tasks: int) -> dict[str, Any]:
    """The behaviour step's code statistic on these texts: insecure counts and McNemar z."""
    from auditlens.judges.code import bandit_labels
    from auditlens.stats import mcnemar_z

    if "base" not in texts:  # adversary workload: insecure counts per side over all rows
        counts = {"base": 0, "finetuned": 0}
        for key, rows in texts.items():
            counts[key.split("/")[0]] += sum(r.status == "insecure" for r in bandit_labels(rows))
        return {"insecure_base": counts["base"], "insecure_finetuned": counts["finetuned"],
                "mcnemar_z": float("nan")}  # fmt: skip

    flags = {
        side: [r.status == "insecure" for r in bandit_labels(texts[side][:n_tasks])]
        for side in ("base", "finetuned")
    }
    return {
        "insecure_base": sum(flags["base"]),
        "insecure_finetuned": sum(flags["finetuned"]),
        "mcnemar_z": round(mcnemar_z(flags["finetuned"], flags["base"]), 4),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from auditlens.models import load_pair

    load_before = round(os.getloadavg()[0], 2)
    pair = load_pair(adapter=args.adapter, device=args.device, dtype=args.dtype)
    adversary = args.workload == "adversary"
    prompts = _prompts(args.tasks, 0 if adversary else args.questions)
    steers = _steers(pair, args.vectors, args.norm) if adversary else []
    default = ADVERSARY_VARIANTS if adversary else VARIANTS
    variants = [v for v in (args.variants or ",".join(default)).split(",") if v]
    if "old" not in variants:
        raise SystemExit("the variants must include 'old' (the reference)")
    order: list[str] = []
    for r in range(args.rounds):
        order += variants if r % 2 == 0 else variants[::-1]
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for name in order:
        if adversary:
            res = run_adversary_variant(name, pair, prompts, steers, args.max_new_tokens,
                                        args.token_budget)  # fmt: skip
        else:
            res = run_variant(name, pair, prompts, args.max_new_tokens, args.token_budget)
        runs[name].append(res)
        print(f"{name:>10}: {res['wall_s']:7.1f} s wall, {res['cpu_s']:7.1f} s CPU", flush=True)
    ref = runs["old"][0]["texts"]
    out: dict[str, Any] = {}
    for name, results in runs.items():
        walls = [r["wall_s"] for r in results]
        texts = {**ref, **results[0]["texts"]} if name == "merged_ft" else results[0]["texts"]
        generated = results[0]["texts"]
        n_gen = sum(len(v) for v in generated.values())
        changed = sum(
            a != b for side in generated for a, b in zip(ref[side], generated[side], strict=True)
        )
        new_tokens = sum(
            len(pair.tokenizer(t, add_special_tokens=False)["input_ids"])
            for side in generated.values()
            for t in side
        )
        out[name] = {
            "wall_s": [round(w, 2) for w in walls],
            "median_wall_s": round(statistics.median(walls), 2),
            "cpu_s": [round(r["cpu_s"], 2) for r in results],
            "median_cpu_s": round(statistics.median(r["cpu_s"] for r in results), 2),
            "generations": n_gen,
            "new_tokens": new_tokens,
            "changed_vs_old": changed,
            "behaviour_statistic": _statistic(texts, args.tasks),
        }
    old, old_cpu = out["old"]["median_wall_s"], out["old"]["median_cpu_s"]
    for name in out:
        out[name]["speedup_vs_old"] = round(old / out[name]["median_wall_s"], 3)
        out[name]["cpu_speedup_vs_old"] = round(old_cpu / out[name]["median_cpu_s"], 3)
    return {
        "benchmark": "generation_old_vs_new",
        "workload": args.workload,
        "steering_variants": len(steers),
        "pair": f"smollm2-135m-instruct vs {args.adapter}",
        "device": str(pair.device),
        "dtype": args.dtype,
        "prompts": {"code_tasks": args.tasks, "questions": args.questions},
        "max_new_tokens": args.max_new_tokens,
        "token_budget": args.token_budget,
        "rounds": args.rounds,
        "order": order,
        "variants": out,
        "identical": all(v["changed_vs_old"] == 0 for k, v in out.items() if k != "merged_ft"),
        "machine": {"load_avg_1m_before": load_before, "torch_threads": torch.get_num_threads()},
    }


def table(result: dict[str, Any]) -> str:
    rows = []
    for name, v in result["variants"].items():
        stat = v["behaviour_statistic"]
        rows.append([
            name, v["generations"], v["new_tokens"], v["median_wall_s"],
            f"{v['speedup_vs_old']:.2f}×", v["median_cpu_s"], f"{v['cpu_speedup_vs_old']:.2f}×",
            v["changed_vs_old"],
            f"{stat['insecure_finetuned']} / {stat['insecure_base']}, z {stat['mcnemar_z']:+.2f}",
        ])  # fmt: skip
    cols = ["variant", "generations", "new tokens", "wall s", "vs old", "CPU s", "CPU vs old",
            "texts changed", "insecure ft / base, McNemar z"]  # fmt: skip
    return markdown_table(cols, rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--adapter", default="organism:insecure")
    p.add_argument("--tasks", type=int, default=32)
    p.add_argument("--questions", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--workload", choices=("behaviour", "adversary"), default="behaviour")
    p.add_argument("--vectors", type=int, default=2, help="adversary: K vectors (+K controls)")
    p.add_argument("--norm", type=float, default=8.0, help="adversary: steering vector norm")
    p.add_argument("--variants", default=None, help="comma-separated (default: all)")
    p.add_argument("--token-budget", type=int, default=None, help="CPU tokens per batch")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="6 prompts x 16 tokens")
    p.add_argument("--out", default=None, help="default benchmarks/results/generation.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.tasks, args.questions, args.max_new_tokens = 4, 2, 16
    if args.workload == "adversary" and not args.quick and args.tasks == 32:
        args.tasks = 8  # the fast budget's adversary_prompts
    result = run(args)
    name = "generation" if args.workload == "behaviour" else "generation_adversary"
    path = write_result(name, result, args.out)
    print(table(result))
    print(f"greedy texts identical to old: {result['identical']}; wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
