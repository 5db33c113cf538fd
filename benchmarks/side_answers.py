"""Answers cached per side: what a second fine-tune of the same base costs.

The workload is what an audit generates through ``auditlens.audit.artifacts.answers`` at a
budget: the discovery step's probe answers (``probe_per_domain`` prompts of each domain),
the behaviour step's held-out code tasks and free-form questions. Organism ``--first`` fills
an artifact cache; then organism ``--second`` (the same base) is run three ways, in one
process, the order reversed on odd rounds so machine load hits each alike:

- ``paired``: ``generate_pair`` (both sides' rows in shared batches, what the audit did before
  answers were cached per side);
- ``cold``: ``artifacts.answers`` into an empty cache (each side generated alone);
- ``warm``: ``artifacts.answers`` into the cache ``--first`` filled (only the fine-tune's
  answers are generated; the base's are read).

``warm`` must equal ``cold`` text for text (the same answers whatever the cache held); the
table also counts answers that differ from ``paired`` (the per-side path must not change what
the statistics read). Writes ``benchmarks/results/side_answers.json`` and prints a table.

    OMP_NUM_THREADS=1 python benchmarks/side_answers.py                  # fast, secure -> insecure
    OMP_NUM_THREADS=1 python benchmarks/side_answers.py --budget standard --rounds 2
    OMP_NUM_THREADS=1 python benchmarks/side_answers.py --quick --out /tmp/smoke.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import machine, markdown_table, write_result

from auditlens.audit import artifacts
from auditlens.audit.cache import ArtifactCache
from auditlens.audit.contract import BUDGETS
from auditlens.audit.steps import behaviour
from auditlens.datasets import PromptSet
from auditlens.generate import chat_prompt, generate_pair
from auditlens.models import load_pair
from auditlens.probe_library import load_probe_library
from auditlens.testbed.questions import free_form_questions


def workloads(budget: str) -> list[tuple[str, PromptSet, int, Any]]:
    """(name, prompts, max_new_tokens, batch_size) of each cached generation at ``budget``."""
    b = BUDGETS[budget]
    s = behaviour.settings(b, None)  # type: ignore[arg-type]
    probes = load_probe_library(b.probe_per_domain)
    tasks = behaviour.held_out_tasks(s.n_code_tasks)
    questions = behaviour.round_robin(free_form_questions(), s.n_questions)
    return [
        ("probe answers", PromptSet("probe_answers", tuple(chat_prompt(p.text) for p in probes)),
         b.probe_new_tokens, b.batch_size),
        ("code tasks", PromptSet("code", tuple(chat_prompt(t.request) for t in tasks)),
         s.code.max_new_tokens, s.code.batch_size),
        ("free-form", PromptSet("free", tuple(chat_prompt(q.text) for q in questions)),
         s.free_form.max_new_tokens, s.free_form.batch_size),
    ]  # fmt: skip


def run(pair: Any, work: list[tuple[str, PromptSet, int, Any]], cache: ArtifactCache | None
        ) -> tuple[float, list[dict[str, list[str]]]]:  # fmt: skip
    """Seconds and answers of every workload (``cache`` None: paired generation)."""
    t0, texts = time.perf_counter(), []
    for _, prompts, new, batch in work:
        if cache is None:
            texts.append(generate_pair(pair, prompts, max_new_tokens=new, batch_size=batch,
                                       share_prefix=True))  # fmt: skip
        else:
            texts.append(artifacts.answers(cache, pair, prompts, max_new_tokens=new,
                                           batch_size=batch)[0])  # fmt: skip
    return time.perf_counter() - t0, texts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", default="fast", choices=sorted(BUDGETS))
    ap.add_argument("--first", default="secure")
    ap.add_argument("--second", default="insecure")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="4 prompts x 8 tokens (smoke run)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: auto)")
    args = ap.parse_args()
    facts = machine() | {"load_avg_1m_before": machine()["load_avg_1m"]}
    work = workloads(args.budget)
    if args.quick:
        work = [(n, p.head(4), 8, b) for n, p, _, b in work]
    first = load_pair(adapter=f"organism:{args.first}", device=args.device)
    second = load_pair(adapter=f"organism:{args.second}", device=args.device)
    seconds: dict[str, list[float]] = {"first": [], "paired": [], "cold": [], "warm": []}
    texts: dict[str, list[dict[str, list[str]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            warm_cache = ArtifactCache(Path(tmp) / f"warm{r}")
            took, _ = run(first, work, warm_cache)
            seconds["first"].append(round(took, 1))
            order = ["paired", "cold", "warm"]
            for name in order if r % 2 == 0 else order[::-1]:
                cache = {"paired": None, "cold": ArtifactCache(Path(tmp) / f"cold{r}"),
                         "warm": warm_cache}[name]  # fmt: skip
                took, texts[name] = run(second, work, cache)
                seconds[name].append(round(took, 1))
                print(f"round {r}: {name} {took:.1f} s", flush=True)

    def changed(name: str) -> int:
        return sum(a != b for w, v in zip(texts[name], texts["paired"], strict=True)
                   for side in ("base", "finetuned")
                   for a, b in zip(w[side], v[side], strict=True))  # fmt: skip

    median = {k: sorted(v)[len(v) // 2] for k, v in seconds.items()}
    rows = [[k, median[k], round(median[k] / median["cold"], 3),
             changed(k) if k in texts else "-"] for k in seconds]  # fmt: skip
    result = {
        "benchmark": "side_answers",
        "budget": args.budget,
        "quick": args.quick,
        "first": args.first,
        "second": args.second,
        "answers": {name: 2 * len(p) for name, p, _, _ in work},
        "seconds": seconds,
        "median_s": median,
        "warm_vs_cold": round(median["warm"] / median["cold"], 3),
        "warm_equals_cold": texts["warm"] == texts["cold"],
        "changed_vs_paired": {k: changed(k) for k in ("cold", "warm")},
        "machine": facts,
    }
    path = write_result("side_answers", result, args.out)
    print(markdown_table(["run", "median s", "vs cold", "answers changed vs paired"], rows))
    print(f"warm == cold: {result['warm_equals_cold']}; wrote {path}")


if __name__ == "__main__":
    torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "1")))
    main()
