"""Crosscoder training throughput: our sparse BatchTopK crosscoder vs sae-lens's BatchTopK SAE.

Same run, same data, interleaved rounds (so machine load hits both alike):

- ours: ``CrosscoderTrainer.step`` on ``[batch, 2, d_model]`` pairs (BatchTopK, sparse decoder);
- sae-lens 6.54: ``SAETrainer.step`` of a ``BatchTopKTrainingSAE`` with the same dictionary size
  on the concatenated activations ``[batch, 2·d_model]``;
- a plain fp32 matmul ``[batch, 2·d_model] @ [2·d_model, n_latents]`` into a reused output
  buffer (the machine's peak; a fresh output each time is ~6% slower here).

FLOPs (multiply-add = 2):

- ours, *executed*: encoder forward ``2·B·D·L`` (dense) plus four sparse products over the
  ``nnz ≈ k·B`` selected pairs, each ``2·nnz·D`` (decoder forward, d loss / d activation,
  decoder-weight and encoder-weight gradients). Top-k selection, elementwise work and Adam
  are not counted.
- dense-equivalent: ``5 · 2·B·D·L`` (encoder forward, decoder forward, the decoder's two
  backward products, the encoder-weight gradient); what sae-lens executes, and what ours
  would cost without sparsity.

Usage::

    python benchmarks/crosscoder.py                      # random data, defaults below
    python benchmarks/crosscoder.py --store STORE --site blocks.15.hook_resid_post
    python benchmarks/crosscoder.py --device cuda --autocast bf16  # bf16 matmuls, fp32 state

On CUDA the matmul peak is measured in the same dtype as the steps (fp32, or bf16 with
``--autocast bf16``: the trainer's weights and Adam state stay fp32, activations and matmuls
run in bf16 under ``torch.autocast``), and every timing synchronises the device.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import cpu_name

from auditlens.diffing.crosscoder import Crosscoder, CrosscoderConfig
from auditlens.diffing.crosscoder_train import (
    CrosscoderTrainConfig,
    CrosscoderTrainer,
    store_batches,
)

RESULTS = Path(__file__).resolve().parent / "results"


def _sync(args: argparse.Namespace) -> None:
    if str(args.device).startswith("cuda"):
        torch.cuda.synchronize()


def _autocast(args: argparse.Namespace) -> Any:
    import contextlib

    if args.autocast == "bf16":
        return torch.autocast(device_type=torch.device(args.device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _data(args: argparse.Namespace) -> list[torch.Tensor]:
    if args.store:
        from auditlens.store import ActivationStore

        store = ActivationStore.open(args.store)
        it = store_batches(store, args.site or store.sites[0], args.batch, seed=0)
        pool = [next(it).to(args.device) for _ in range(args.pool)]
        if pool[0].shape[-1] != args.d_model:
            raise SystemExit(f"store d_model {pool[0].shape[-1]} != --d-model {args.d_model}")
        return pool
    gen = torch.Generator().manual_seed(0)
    # correlated pairs: the fine-tuned activation is the base one plus a small change
    out = []
    for _ in range(args.pool):
        base = torch.randn(args.batch, args.d_model, generator=gen)
        ft = base + 0.3 * torch.randn(args.batch, args.d_model, generator=gen)
        out.append(torch.stack([base, ft], dim=1).to(args.device))
    return out


def _ours(args: argparse.Namespace, pool: list[torch.Tensor]) -> tuple[Any, Any]:
    cfg = CrosscoderConfig(d_model=args.d_model, n_latents=args.n_latents, k=float(args.k))
    train = CrosscoderTrainConfig(
        n_steps=10**9, lr=1e-4, log_every=10**9, seed=0, device=str(args.device)
    )
    trainer = CrosscoderTrainer(Crosscoder(cfg, seed=0), train)
    trainer.model.set_input_scale(pool[:2])
    nnz: list[float] = []

    def step(batch: torch.Tensor) -> None:
        with _autocast(args):
            trainer.step(batch)

    def record(batch: torch.Tensor) -> None:
        with torch.no_grad():
            nnz.append(float((trainer.model.encode(batch, batch_topk=True) > 0).sum()))

    return step, (trainer, record, nnz)


def _saelens(args: argparse.Namespace) -> Any:
    from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig, LoggingConfig, SAETrainer
    from sae_lens.config import SAETrainerConfig

    torch.manual_seed(0)
    d_in = 2 * args.d_model
    sae = BatchTopKTrainingSAE(
        BatchTopKTrainingSAEConfig(
            d_in=d_in, d_sae=args.n_latents, k=float(args.k), device=str(args.device)
        )
    )
    cfg = SAETrainerConfig(
        total_training_samples=10**12,
        train_batch_size_samples=args.batch,
        lr=1e-4,
        lr_end=1e-4,
        device=str(args.device),
        logger=LoggingConfig(log_to_wandb=False),
    )
    trainer = SAETrainer(cfg=cfg, sae=sae, data_provider=iter(()))

    def step(batch: torch.Tensor) -> None:
        with _autocast(args):
            trainer.step(batch.reshape(batch.shape[0], -1))  # what SAETrainer.fit does per step
        trainer.n_training_steps += 1

    return step


def _time_steps(
    step: Any, pool: list[torch.Tensor], n: int, offset: int, args: argparse.Namespace
) -> list[float]:
    times = []
    for i in range(n):
        batch = pool[(offset + i) % len(pool)]
        _sync(args)
        t0 = time.perf_counter()
        step(batch)
        _sync(args)
        times.append(time.perf_counter() - t0)
    return times


def _time_matmul(args: argparse.Namespace, n: int) -> list[float]:
    gen = torch.Generator().manual_seed(1)
    dtype = torch.bfloat16 if args.autocast == "bf16" else torch.float32
    x = torch.randn(args.batch, 2 * args.d_model, generator=gen).to(args.device, dtype)
    w = torch.randn(args.n_latents, 2 * args.d_model, generator=gen).to(args.device, dtype)
    out = torch.mm(x, w.t())  # then reuse the output buffer: the faster of the two ways
    times = []
    for _ in range(n):
        _sync(args)
        t0 = time.perf_counter()
        torch.mm(x, w.t(), out=out)
        _sync(args)
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--d-model", type=int, default=576)
    p.add_argument("--n-latents", type=int, default=9216)
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--steps", type=int, default=6, help="timed steps per method per round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--pool", type=int, default=4, help="distinct batches cycled through")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--store", default=None, help="use harvested activations from this store")
    p.add_argument("--site", default=None)
    p.add_argument("--skip-saelens", action="store_true")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--autocast",
        choices=("none", "bf16"),
        default="none",
        help="bf16: matmuls in bf16 under torch.autocast (fp32 weights and state)",
    )
    p.add_argument("--out", default=str(RESULTS / "crosscoder.json"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    if load_before[0] > 1.5 * (os.cpu_count() or 1) / 2:
        print(f"warning: load average {load_before[0]:.1f}; timings will be noisy", file=sys.stderr)
    pool = _data(args)
    ours_step, (trainer, record, nnz) = _ours(args, pool)
    methods: dict[str, Any] = {"ours": ours_step}
    if not args.skip_saelens:
        methods["sae_lens"] = _saelens(args)
    for step in methods.values():  # warm-up (allocator, MKL, first-step threshold search)
        _time_steps(step, pool, args.warmup, 0, args)
    times: dict[str, list[float]] = {name: [] for name in methods}
    times["matmul"] = []
    for r in range(args.rounds):
        for name, step in methods.items():
            times[name] += _time_steps(step, pool, args.steps, r * args.steps, args)
        times["matmul"] += _time_matmul(args, 2 * args.steps)
    record(pool[0])
    b, d_in, n_lat = args.batch, 2 * args.d_model, args.n_latents
    mean_nnz = statistics.mean(nnz)
    dense_one = 2.0 * b * d_in * n_lat
    ours_flops = dense_one + 4 * 2.0 * mean_nnz * d_in
    dense_equiv = 5 * dense_one
    med = {k: statistics.median(v) for k, v in times.items()}
    matmul_gflops = dense_one / med["matmul"] / 1e9
    result: dict[str, Any] = {
        "benchmark": "crosscoder_train_step",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu": cpu_name(),
            "logical_cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "shape": {"batch": b, "d_in": d_in, "n_latents": n_lat, "k": args.k},
        "device": str(args.device),
        "autocast": args.autocast,
        "matmul_dtype": "bfloat16" if args.autocast == "bf16" else "float32",
        "data": f"store {args.store} {args.site}" if args.store else "random correlated pairs",
        "timed_steps_per_method": args.steps * args.rounds,
        "median_step_seconds": med,
        "step_seconds": times,
        "matmul_gflops": matmul_gflops,
        "ours": {
            "tokens_per_second": b / med["ours"],
            "executed_gflop_per_step": ours_flops / 1e9,
            "executed_gflops": ours_flops / med["ours"] / 1e9,
            "fraction_of_matmul": ours_flops / med["ours"] / 1e9 / matmul_gflops,
            "dense_equivalent_gflops": dense_equiv / med["ours"] / 1e9,
            "mean_nnz_per_token": mean_nnz / b,
            "dead_latents_in_window": int(trainer.dead_mask().sum()),
        },
        "flop_counting": (
            "executed = 2·B·D·L (dense encoder forward) + 4·2·nnz·D (sparse decoder forward, "
            "activation grads, decoder and encoder weight grads); selection, elementwise ops and "
            "Adam are not counted. dense-equivalent = 5·2·B·D·L."
        ),
    }
    if "sae_lens" in med:
        result["sae_lens"] = {
            "version": __import__("sae_lens").__version__,
            "tokens_per_second": b / med["sae_lens"],
            "dense_gflops": dense_equiv / med["sae_lens"] / 1e9,
            "fraction_of_matmul": dense_equiv / med["sae_lens"] / 1e9 / matmul_gflops,
        }
        result["speedup_vs_sae_lens"] = med["sae_lens"] / med["ours"]
    result["targets"] = {
        "speedup_vs_sae_lens>=1.0": result.get("speedup_vs_sae_lens", 0.0) >= 1.0,
        "fraction_of_matmul>=0.5": result["ours"]["fraction_of_matmul"] >= 0.5,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    _print_table(result)
    print(f"\nwrote {out}")
    return 0


def _print_table(r: dict[str, Any]) -> None:
    s = r["shape"]
    print(
        f"shape: batch {s['batch']}, d_in {s['d_in']}, n_latents {s['n_latents']}, k {s['k']}; "
        f"torch threads {r['machine']['torch_threads']}, "
        f"load {r['machine']['load_average_before'][0]:.1f}"
    )
    print(f"{'method':<28}{'step s':>9}{'tokens/s':>11}{'GFLOP/s':>10}{'of matmul':>11}")
    med = r["median_step_seconds"]
    o = r["ours"]
    print(
        f"{'ours (executed FLOPs)':<28}{med['ours']:>9.3f}{o['tokens_per_second']:>11.0f}"
        f"{o['executed_gflops']:>10.1f}{o['fraction_of_matmul']:>10.0%}"
    )
    print(f"{'ours (dense-equivalent)':<28}{'':>9}{'':>11}{o['dense_equivalent_gflops']:>10.1f}")
    if "sae_lens" in r:
        sl = r["sae_lens"]
        print(
            f"{'sae-lens BatchTopK SAE':<28}{med['sae_lens']:>9.3f}{sl['tokens_per_second']:>11.0f}"
            f"{sl['dense_gflops']:>10.1f}{sl['fraction_of_matmul']:>10.0%}"
        )
    print(
        f"{'fp32 matmul B×D @ D×L':<28}{med['matmul']:>9.3f}{'':>11}"
        f"{r['matmul_gflops']:>10.1f}{1:>10.0%}"
    )
    if "speedup_vs_sae_lens" in r:
        print(
            f"speed-up vs sae-lens: {r['speedup_vs_sae_lens']:.2f}x; "
            f"mean nnz/token {o['mean_nnz_per_token']:.1f}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
