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
import sys
import time
from pathlib import Path

import torch

from auditlens import load_pair
from auditlens.audit import artifacts
from auditlens.audit.cache import ArtifactCache
from auditlens.audit.contract import resolve_budget
from auditlens.audit.steps import concern as step
from auditlens.behaviour import concern
from auditlens.datasets import PromptSet
from auditlens.testbed.splits import load_splits


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
    gens, _ = artifacts.probe_generations(
        cache, pair, fresh, max_new_tokens=s.max_new_tokens, batch_size=s.batch_size
    )
    greedy = concern.with_follow_up(
        result, gens, [p.text for p in fresh], domains=[p.domain for p in fresh]
    )
    out["greedy_follow_up_z"] = greedy.follow_up.screen_z if greedy.follow_up else 0.0
    out["greedy_z"] = greedy.z
    sampled, _ = artifacts.probe_generations(
        cache, pair, fresh, max_new_tokens=s.max_new_tokens, batch_size=s.batch_size,
        samples=samples, temperature=temperature,
    )  # fmt: skip
    per: dict[str, object] = {}
    for k in sorted(k for k in {1, 2, 4, samples} if k <= samples):
        first_k = {side: [a for i, a in enumerate(texts) if i % samples < k]
                   for side, texts in sampled.items()}  # fmt: skip
        both = concern.with_follow_up(result, first_k, [p.text for p in fresh],
                                      [p.domain for p in fresh], samples=k,
                                      temperature=temperature)  # fmt: skip
        assert both.follow_up is not None
        per[str(k)] = {"follow_up_z": both.follow_up.screen_z, "z": both.z}
        if k == samples:
            out["rate_sampled"] = {side: both.follow_up.rate(side) for side in sampled}
    out["sampled"] = per
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
