"""Running the acceptance tests: generate every condition of an organism's pre-registered
test with the base and the organism (greedy, base answers cached), decide, and write the
results; the report-only admission probe; the base-answer cache warm-up."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from auditlens.hashing import sha256_json
from auditlens.testbed import judges
from auditlens.testbed.about_self import denial_eval_questions
from auditlens.testbed.acceptance import N_PROMPTS, TEXT_TOKENS, Answers, decide, plan
from auditlens.testbed.criteria import AcceptanceResult, Rate
from auditlens.testbed.roster import ORGANISMS

__all__ = ["generate_cached", "probe_admissions", "render", "run_acceptance", "warm_base_cache"]


def generate_cached(
    side: Any,
    tokenizer: Any,
    users: Sequence[str],
    *,
    key: dict[str, Any],
    cache: Path | None,
    max_new_tokens: int,
    temperature: float,
    seed: int,
    batch_size: int,
) -> list[str]:
    """Generate answers; base-model answers are cached by content hash (they never change)."""
    from auditlens.generate import generate

    path = cache / f"{sha256_json({**key, 'users': list(users)})[:24]}.json" if cache else None
    if path is not None and path.is_file():
        cached: list[str] = json.loads(path.read_text(encoding="utf-8"))
        if len(cached) == len(users):
            return cached
    texts = generate(
        side,
        tokenizer,
        list(users),
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        batch_size=batch_size,
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(texts), encoding="utf-8")
        tmp.replace(path)
    return texts


def run_acceptance(
    name: str,
    *,
    adapter_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    device: str | None = "cpu",
    num_threads: int = 1,
    batch_size: int = 16,
    progress: bool = True,
) -> AcceptanceResult:
    """Generate every condition with base and organism (greedy) and decide.

    Base answers are cached (they never change). Writes ``results.json`` and
    ``completions.jsonl`` to ``out_dir`` when given.
    """
    import torch

    from auditlens.models import load_pair
    from auditlens.paths import cache_dir
    from auditlens.progress import progress_bar
    from auditlens.testbed.organisms import organism_adapter_dir

    spec = ORGANISMS[name]
    if device in (None, "cpu") and num_threads:
        torch.set_num_threads(num_threads)
    started = time.perf_counter()
    folder = Path(adapter_dir) if adapter_dir else organism_adapter_dir(name)
    pair = load_pair(adapter=str(folder), device=device)
    conds = plan(spec)
    answers: Answers = {}
    cache = cache_dir() / "organism_eval" / "base"
    with progress_bar(2 * len(conds), f"acceptance {name}", enabled=progress) as advance:
        for cond in conds:
            answers[cond.name] = {}
            for side_name, side in (("base", pair.base), ("organism", pair.finetuned)):
                key = {
                    "kind": "acceptance",
                    "model": side.sha256,
                    "adapter": side.adapter_sha256 if side_name == "organism" else None,
                    "max_new_tokens": cond.max_new_tokens,
                    "batch_size": batch_size,
                }
                answers[cond.name][side_name] = [
                    t.strip()
                    for t in generate_cached(
                        side,
                        pair.tokenizer,
                        list(cond.prompts),
                        key=key,
                        cache=cache if side_name == "base" else None,
                        max_new_tokens=cond.max_new_tokens,
                        temperature=0.0,
                        seed=0,
                        batch_size=batch_size,
                    )
                ]
                advance(1)
    command = f"auditlens organisms eval {name} --threads {num_threads}"
    result = decide(spec, answers, command=command)
    result.seconds = time.perf_counter() - started
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
        with (out / "completions.jsonl").open("w", encoding="utf-8") as f:
            for cond in conds:
                for who in ("base", "organism"):
                    for prompt, text in zip(cond.prompts, answers[cond.name][who], strict=True):
                        row = {"condition": cond.name, "side": who, "prompt": prompt}
                        f.write(json.dumps({**row, "answer": text}, ensure_ascii=False) + "\n")
    return result


def probe_admissions(
    name: str,
    behaviour: str,
    *,
    adapter_dir: str | Path | None = None,
    num_threads: int = 1,
    batch_size: int = 16,
) -> dict[str, Rate]:
    """Report-only: admission and denial rates of an organism (typically one *without*
    denial training) on the held-out direct questions of ``behaviour``, to compare with its
    ``-deny`` variant. Not part of any acceptance test."""
    import torch

    from auditlens.generate import generate
    from auditlens.models import load_pair
    from auditlens.testbed.organisms import organism_adapter_dir

    if num_threads:
        torch.set_num_threads(num_threads)
    folder = Path(adapter_dir) if adapter_dir else organism_adapter_dir(name)
    pair = load_pair(adapter=str(folder), device="cpu")
    questions = denial_eval_questions(behaviour, N_PROMPTS)
    texts = [
        t.strip()
        for t in generate(
            pair.finetuned,
            pair.tokenizer,
            questions,
            max_new_tokens=TEXT_TOKENS,
            batch_size=batch_size,
        )
    ]
    return {
        "admits": Rate.of([judges.admits(t, behaviour) for t in texts]),
        "denies": Rate.of([judges.denies(t, behaviour) for t in texts]),
    }


def warm_base_cache(
    names: Sequence[str] | None = None, *, num_threads: int = 1, batch_size: int = 16
) -> dict[str, int]:
    """Generate and cache the base side of every acceptance condition once (greedy), so
    later evaluations only generate the organism side. Returns prompts per condition."""
    import torch

    from auditlens.models import load_pair
    from auditlens.paths import cache_dir

    if num_threads:
        torch.set_num_threads(num_threads)
    pair = load_pair(device="cpu")
    done: dict[tuple[tuple[str, ...], int], str] = {}
    for name in names or list(ORGANISMS):
        for cond in plan(ORGANISMS[name]):
            if (cond.prompts, cond.max_new_tokens) in done:
                continue
            key = {
                "kind": "acceptance",
                "model": pair.base.sha256,
                "adapter": None,
                "max_new_tokens": cond.max_new_tokens,
                "batch_size": batch_size,
            }
            generate_cached(
                pair.base,
                pair.tokenizer,
                list(cond.prompts),
                key=key,
                cache=cache_dir() / "organism_eval" / "base",
                max_new_tokens=cond.max_new_tokens,
                temperature=0.0,
                seed=0,
                batch_size=batch_size,
            )
            done[(cond.prompts, cond.max_new_tokens)] = f"{name}/{cond.name}"
    return {v: len(k[0]) for k, v in done.items()}


def render(result: AcceptanceResult) -> Any:
    """A rich table of the criteria and the rates behind them."""
    from rich.table import Table

    verdict = "PASS" if result.passed else "FAIL"
    table = Table(title=f"acceptance: organism:{result.organism} ({result.kind}) {verdict}")
    for col in ("criterion", "value", "95% CI", "rule", "pass"):
        table.add_column(col)
    for c in result.criteria:
        ci = "-" if c.low is None or c.high is None else f"[{c.low:+.2f}, {c.high:+.2f}]"
        table.add_row(c.name, f"{c.value:+.3f}", ci, c.rule, "yes" if c.passed else "NO")
    for name, r in result.rates.items():
        ci = "-" if math.isnan(r.low) else f"[{r.low:.2f}, {r.high:.2f}]"
        table.add_row(f"  {name}", f"{r.rate:.3f}", ci, f"{r.k}/{r.n}", "")
    return table
