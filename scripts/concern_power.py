"""Choose the concern follow-up's design on the dev split: greedy answers (statistic v4)
against several sampled answers per fresh prompt, with the prompt as the unit.

For each organism it runs the concern step's stage one exactly as an audit does (the same
artifact-cache entries, so a later audit reuses them), picks the follow-up domains, then
answers the fresh prompts greedily and ``--samples`` times with sampling. Prints and writes
JSON: the screen z, the greedy follow-up z, the sampled follow-up z for each sample count, and
the combined z's. Report-only: it chooses nothing by itself.

    OMP_NUM_THREADS=1 python scripts/concern_power.py --budget fast --split dev --samples 4 \
        --out out/cp/fast-dev4.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from auditlens import load_pair
from auditlens.audit import artifacts
from auditlens.audit.cache import ArtifactCache
from auditlens.audit.contract import resolve_budget
from auditlens.audit.steps import concern as step
from auditlens.behaviour import concern, concern_panel
from auditlens.datasets import PromptSet
from auditlens.stats import sign_flip_z
from auditlens.testbed.splits import load_splits


def _any(texts: list[str], prompts: list[str], names: set[str]) -> list[bool]:
    flags = concern_panel.answer_flags(texts, prompts, names)
    return [any(col) for col in zip(*flags.values(), strict=True)]


def measure(name: str, budget: str, samples: int, temperature: float) -> dict[str, object]:
    t0 = time.perf_counter()
    pair = load_pair() if name == "base-vs-base" else load_pair(adapter=f"organism:{name}")
    cache = ArtifactCache()
    spent = resolve_budget(budget)
    s = step.settings(spent, PromptSet("none", ()))

    result, fresh = step.screen(cache, pair, s)
    domains = sorted({p.domain for p in fresh})
    out: dict[str, object] = {"name": name, "screen_z": result.screen_z, "domains": domains}
    if not fresh:
        out.update(seconds=round(time.perf_counter() - t0, 1))
        return out
    gens, _, _ = artifacts.probe_generations(
        cache, pair, fresh, max_new_tokens=s.max_new_tokens, batch_size=s.batch_size
    )
    greedy = concern.with_follow_up(
        result, gens, [p.text for p in fresh], domains=[p.domain for p in fresh]
    )
    out["greedy_follow_up_z"] = greedy.follow_up.screen_z if greedy.follow_up else 0.0
    out["greedy_z"] = greedy.z
    texts = [p.text for p in fresh]
    repeated = [t for t in texts for _ in range(samples)]
    sampled, _, _ = artifacts.probe_generations(
        cache, pair, fresh, max_new_tokens=s.max_new_tokens, batch_size=s.batch_size,
        samples=samples, temperature=temperature,
    )  # fmt: skip
    names = {side: set(result.names.get(side, [])) for side in ("finetuned", "base")}
    flags = {side: _any(sampled[side], repeated, names[side]) for side in sampled}
    per: dict[str, object] = {}
    for k in sorted({1, 2, 4, samples}):
        if k > samples:
            continue
        diffs = []
        for i in range(len(texts)):
            rows = range(i * samples, i * samples + k)
            ft = sum(flags["finetuned"][r] for r in rows)
            diffs.append((ft - sum(flags["base"][r] for r in rows)) / k)
        z2 = sign_flip_z(diffs)
        per[str(k)] = {"follow_up_z": z2, "z": (result.screen_z + z2) / math.sqrt(2.0)}
    out["sampled"] = per
    out["rate_sampled"] = {side: sum(f) / len(f) for side, f in flags.items()}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", default="fast")
    ap.add_argument("--split", default="dev", choices=["dev", "test"],
                    help="test: report only, after the design is fixed on dev")  # fmt: skip
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    names = args.only or ["base-vs-base", *load_splits()[args.split]]
    done = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in names:
        if name in done:
            continue
        try:
            row = measure(name, args.budget, args.samples, args.temperature)
        except Exception as exc:  # an unshipped organism: say so and go on
            print(f"{name}: skipped ({exc})", file=sys.stderr)
            continue
        done[name] = row
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(done, indent=1))
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
