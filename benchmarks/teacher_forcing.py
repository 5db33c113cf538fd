"""Teacher-forced scoring: full logits at every position (the old path) vs the answer window.

The trigger scan, the divergent words and the likelihood contrast score fixed answers after
chat-formatted prompts. The old path unembedded every position (system prompt, template and
question included) and took the log-softmax over the whole ``[batch, seq, vocab]`` tensor
before slicing out the answer; ``auditlens.teacher_forcing`` asks the model for logits from
the batch's first answer position on (``logits_to_keep``). Three workloads, both sides of
the pair (the embedded model and the shipped ``insecure`` adapter), batches of 8:

- ``triggers``: 8 probe prompts x (no prefix + the 10 generic trigger prefixes), 24 answer
  tokens each (the `standard` trigger scan's shape; its ``[answer, vocab]`` log-probs);
- ``divergent``: 32 probe prompts, 64-token answers (the log-probability of each token);
- ``likelihood``: 32 code tasks, secure and insecure solutions (mean token log-probability).

The answers are the code tasks' solution texts (the timing depends on their length, not on
what they say). Old and new run interleaved (old, new, new, old ...), so machine load hits
both alike; the table gives median wall times, their ratio and the largest difference in any
log-probability between the two paths. Writes ``benchmarks/results/teacher_forcing.json``.

    python benchmarks/teacher_forcing.py              # 2 rounds
    python benchmarks/teacher_forcing.py --quick      # 4 prompts, 1 round (smoke run)
    python benchmarks/teacher_forcing.py --device cuda
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

Rows = list[tuple[list[int], int]]
VARIANTS = ("old", "window", "prefix")


@torch.no_grad()
def _old_logprobs(side: Any, rows: Rows, pad: int, batch_size: int) -> list[torch.Tensor]:
    """The old path: full logits, log-softmax over every position, then the answer slice."""
    from auditlens.teacher_forcing import pad_rows

    model = side.hf
    device = next(model.parameters()).device
    out = []
    for lo in range(0, len(rows), batch_size):
        chunk = rows[lo : lo + batch_size]
        ids, attn = pad_rows(chunk, pad)
        with side.active():
            logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits
        logp = torch.log_softmax(logits.float(), -1).cpu()
        out += [logp[r, start - 1 : len(seq) - 1] for r, (seq, start) in enumerate(chunk)]
    return out


def _old_token_logprobs(side: Any, rows: Rows, pad: int, batch_size: int) -> list[torch.Tensor]:
    full = _old_logprobs(side, rows, pad, batch_size)
    return [
        lp.gather(-1, torch.tensor(seq[start:])[:, None]).squeeze(-1)
        for lp, (seq, start) in zip(full, rows, strict=True)
    ]


def _workloads(pair: Any, n: int) -> dict[str, tuple[Rows, bool]]:
    """name -> (rows, whether the whole distribution is read)."""
    from auditlens.diffing.triggers import GENERIC
    from auditlens.judges.code import fence
    from auditlens.probe_library import load_probe_library
    from auditlens.teacher_forcing import chat_row
    from auditlens.testbed import eval_tasks

    tok = pair.tokenizer
    tasks = [t for two in zip(*eval_tasks(0, n, n), strict=True) for t in two][:n]
    probes = [p.text for p in load_probe_library()][: max(n, 8)]
    texts = [fence(t.insecure) for t in tasks]
    prefixes = ["", *GENERIC]
    scan = [chat_row(tok, f"{pre} {p}".strip(), texts[i % len(texts)], 24)
            for pre in prefixes for i, p in enumerate(probes[: min(8, n)])]  # fmt: skip
    words = [chat_row(tok, p, texts[i % len(texts)], 64) for i, p in enumerate(probes[:n])]
    code = [chat_row(tok, t.request, fence(s)) for t in tasks for s in (t.secure, t.insecure)]
    return {"triggers": (scan, True), "divergent": (words, False), "likelihood": (code, False)}


def _score(variant: str, pair: Any, rows: Rows, whole: bool, pad: int, bs: int) -> Any:
    """One variant over both sides: (wall seconds, every row's log-probs)."""
    from auditlens.teacher_forcing import answer_logprobs, answer_token_logprobs

    sync = torch.cuda.synchronize if pair.device.type == "cuda" else (lambda: None)
    got: list[torch.Tensor] = []
    sync()
    t0 = time.perf_counter()
    for side in pair.sides:
        if variant == "old":
            got += (_old_logprobs if whole else _old_token_logprobs)(side, rows, pad, bs)
        else:
            new = answer_logprobs if whole else answer_token_logprobs
            got += new(side, rows, pad=pad, batch_size=bs, share_prefix=variant == "prefix")
    sync()
    return time.perf_counter() - t0, got


def run(args: argparse.Namespace) -> dict[str, Any]:
    from auditlens.models import load_pair

    load_before = round(os.getloadavg()[0], 2)
    pair = load_pair(adapter=args.adapter, device=args.device, dtype=args.dtype)
    pad = pair.tokenizer.pad_token_id if pair.tokenizer.pad_token_id is not None else 0
    bs = args.batch_size
    order = [v for r in range(args.rounds) for v in VARIANTS[:: 1 if r % 2 == 0 else -1]]
    out: dict[str, Any] = {}
    for name, (rows, whole) in _workloads(pair, args.prompts).items():
        walls: dict[str, list[float]] = {v: [] for v in VARIANTS}
        results: dict[str, list[torch.Tensor]] = {}
        for variant in order:
            wall, results[variant] = _score(variant, pair, rows, whole, pad, bs)
            walls[variant].append(wall)
        old = statistics.median(walls["old"])
        out[name] = {
            "rows": len(rows),
            "tokens": sum(len(ids) for ids, _ in rows),
            "answer_tokens": sum(len(ids) - start for ids, start in rows),
            "prefix_tokens": sum(_prefix_lengths(rows, bs)),
            "wall_s": {v: [round(w, 3) for w in walls[v]] for v in VARIANTS},
            "speedup": {v: round(old / statistics.median(walls[v]), 3) for v in VARIANTS[1:]},
            "max_abs_logprob_gap": {v: _gap(results["old"], results[v]) for v in VARIANTS[1:]},
        }
        print(f"{name:>10}: " + ", ".join(f"{v} {statistics.median(walls[v]):6.2f} s"
                                          for v in VARIANTS), flush=True)  # fmt: skip
    return {
        "benchmark": "teacher_forcing_full_vs_answer_window",
        "pair": f"smollm2-135m-instruct vs {args.adapter}",
        "device": str(pair.device),
        "dtype": args.dtype,
        "batch_size": bs,
        "rounds": args.rounds,
        "order": order,
        "workloads": out,
        "machine": {"load_avg_1m_before": load_before, "torch_threads": torch.get_num_threads()},
    }


def _gap(old: list[torch.Tensor], new: list[torch.Tensor]) -> float:
    return max(float((a - b).abs().max()) for a, b in zip(old, new, strict=True) if a.numel())


def _prefix_lengths(rows: Rows, bs: int) -> list[int]:
    """Per row, the tokens its batch shares (what ``prefix`` computes once per batch)."""
    from auditlens.teacher_forcing import shared_prefix_length

    out = []
    for lo in range(0, len(rows), bs):
        chunk = rows[lo : lo + bs]
        out += [shared_prefix_length(chunk)] * len(chunk)
    return out


def table(result: dict[str, Any]) -> str:
    rows = []
    for name, w in result["workloads"].items():
        med = {v: round(statistics.median(w["wall_s"][v]), 2) for v in VARIANTS}
        rows.append([
            name, w["rows"], w["tokens"], w["answer_tokens"], w["prefix_tokens"],
            med["old"], med["window"], med["prefix"],
            f"{w['speedup']['window']:.2f}×", f"{w['speedup']['prefix']:.2f}×",
            f"{w['max_abs_logprob_gap']['window']:.1e} / {w['max_abs_logprob_gap']['prefix']:.1e}",
        ])  # fmt: skip
    cols = ["workload", "rows", "tokens", "answer tokens", "shared-prefix tokens", "old s",
            "window s", "window + prefix s", "window vs old", "window + prefix vs old",
            "max abs Δ log p (window / + prefix)"]  # fmt: skip
    return markdown_table(cols, rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--adapter", default="organism:insecure")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="4 prompts, 1 round")
    p.add_argument("--out", default=None, help="default benchmarks/results/teacher_forcing.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.prompts, args.rounds = 4, 1
    result = run(args)
    print(table(result))
    path = write_result("teacher_forcing", result, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
