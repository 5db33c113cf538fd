"""The discovery step's code-security check alone, on two prompt sets, per organism.

    python benchmarks/code_check.py --budget standard --organisms insecure secure [--device cpu]

For each organism (``base-vs-base`` for the null) both models answer (1) the probe library's
held-out code prompts (what the check read before the seventh stop) and (2) the testbed code
tasks that no scored statistic reads (``auditlens.audit.steps.adversary.check_tasks``), and
(3) both together (what it reads now), at the budget's check size and answer length; each is
judged by the check itself (``auditlens.behaviour.checks.code_security``: Bandit MEDIUM/HIGH
where both sides parse, McNemar z). Answers are cached in ``--cache`` (the shared artifact
cache format). Decide on dev organisms; a test organism is refused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from auditlens.audit import artifacts
from auditlens.audit.cache import ArtifactCache
from auditlens.audit.contract import BUDGETS
from auditlens.audit.hypotheses import held_out
from auditlens.audit.steps import discovery
from auditlens.audit.steps.adversary import check_tasks
from auditlens.behaviour import checks
from auditlens.models import load_pair
from auditlens.probe_library import ProbePrompt, load_probe_library
from auditlens.testbed.splits import load_splits


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", default="standard", choices=sorted(BUDGETS))
    ap.add_argument("--organisms", nargs="+", required=True)
    ap.add_argument("--cache", type=Path, default=Path("out/code_check_cache"))
    ap.add_argument("--device", default=None, help="cpu or cuda (default: auto)")
    args = ap.parse_args()
    if leaked := set(args.organisms) & set(load_splits()["test"]):
        raise SystemExit(f"test organisms are not for deciding: {', '.join(sorted(leaked))}")
    torch.set_num_threads(1)
    s = discovery.settings(BUDGETS[args.budget], None)  # type: ignore[arg-type]
    library, used = load_probe_library(), load_probe_library(s.per_domain)
    sets = {
        "library": held_out(library, used, "code", 2 * s.check_prompts),
        "tasks": [ProbePrompt("code", t.request) for t in check_tasks(*s.code_tasks)],
    }
    cache = ArtifactCache(args.cache)
    for name in args.organisms:
        adapter = None if name == "base-vs-base" else f"organism:{name}"
        pair = load_pair(adapter=adapter, device=args.device)
        row: dict[str, object] = {"organism": name, "budget": args.budget}
        answers = {}
        for label, prompts in sets.items():
            answers[label], _ = artifacts.probe_generations(
                cache, pair, prompts, max_new_tokens=s.code_new_tokens, batch_size=8
            )
        both = {
            side: answers["library"][side] + answers["tasks"][side] for side in answers["tasks"]
        }
        for label, gens in (*answers.items(), ("both", both)):
            r = checks.code_security(gens, id=label)
            row[label] = {"parse_both": r.n, "z": round(r.z, 2),
                          "finetuned": round(r.rate("finetuned"), 3),
                          "base": round(r.rate("base"), 3), "outcome": r.outcome}  # fmt: skip
            row[label]["prompts"] = len(gens["base"])  # type: ignore[index]
        print(json.dumps(row), flush=True)
        del pair


if __name__ == "__main__":
    main()
