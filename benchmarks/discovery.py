"""discovery@3 on the testbed's built *dev* organisms: the audit's layers, diffing, concern and
discovery steps per organism, then the share whose ground-truth keywords the top-3 hypotheses
name.

    python benchmarks/discovery.py --adapters DIR [--splits FILE] [--budget fast]
                                   [--out out/discovery] [--only NAME ...] [--summarise]
                                   [--device cpu|cuda] [--audits AUDITS] [--split dev|test]

``DIR`` holds one folder per organism (adapter + ``manifest.json`` with the ground truth).
Only organisms listed under ``dev`` in ``--splits`` are run (``--split test`` reports the test
split once its constants are fixed: never choose anything from it). ``--audits`` reads full
audits already run (``AUDITS/NAME/``, e.g. by ``auditlens bench testbed``; ``base-vs-base``
for base) instead of running the steps again.
Each organism's result goes to ``OUT/NAME.json`` (reused on a re-run); ``--summarise`` prints
discovery@3 with a Wilson interval, per instrument (the instrument's own top-3 candidates)
and with each instrument dropped (re-merged from the cached candidates: nothing regenerates).
Base vs base (``base``) is run too: it should give no hypothesis.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from auditlens.audit import AuditContext
from auditlens.audit.contract import resolve_budget
from auditlens.audit.hypotheses import discovery_at_k, merge
from auditlens.audit.pipeline import run_step
from auditlens.audit.steps import concern, diffing, discovery, layers
from auditlens.models import load_pair
from auditlens.reports.findings import Hypothesis
from auditlens.stats import wilson_interval

INSTRUMENTS = ("divergent", "features", "triggers", "adl", "crosscoder", "concern")


def run_one(
    name: str, adapter: Path | None, budget: str, out: Path, device: str | None = None
) -> dict[str, Any]:
    start = time.time()
    pair = load_pair(adapter=str(adapter) if adapter else None, device=device)
    ctx = AuditContext(pair, out / "runs" / name, resolve_budget(budget), "generic_chat",
                       progress=False)  # fmt: skip
    timings = {}
    for step in (layers, diffing, concern, discovery):
        t = time.time()
        run_step(step.STEP, ctx)
        timings[step.STEP.name] = round(time.time() - t, 1)
    found = ctx.outputs["discovery"]
    return {
        "name": name,
        "hypotheses": [h.model_dump(mode="json") for h in found.hypotheses],
        "candidates": found.data["candidates"],
        "timings_s": timings,
        "wall_s": round(time.time() - start, 1),
    }


def from_audit(name: str, folder: Path) -> dict[str, Any]:
    """The same record from a full audit's ``findings.json`` and discovery step output."""
    findings = json.loads((folder / "findings.json").read_text())
    key = findings["config"]["step_keys"]["discovery"]
    output = json.loads((folder / "steps" / "discovery" / key[:16] / "output.json").read_text())
    return {
        "name": name,
        "hypotheses": findings.get("hypotheses", []),
        "candidates": output["output"]["data"]["candidates"],
        "timings_s": findings.get("timings_s", {}),
        "wall_s": round(sum((findings.get("timings_s") or {}).values()), 1),
    }


def summarise(out: Path, truths: dict[str, dict[str, Any]]) -> str:
    rows, lines = [], []
    for name, gt in truths.items():
        path = out / f"{name}.json"
        if not path.is_file():
            continue
        res = json.loads(path.read_text())
        hyps = [Hypothesis.model_validate(h) for h in res["hypotheses"]]
        cands = [Hypothesis.model_validate(h) for h in res["candidates"]]
        kw, syn = gt["keywords"], gt.get("synonyms", {})
        hit = discovery_at_k(hyps, kw, 3, syn)
        per = {}
        for inst in INSTRUMENTS:
            own = merge([c for c in cands if c.source == inst])
            per[inst] = discovery_at_k(own, kw, 3, syn) is not None
        ablate = {inst: discovery_at_k(merge([c for c in cands if c.source != inst]), kw, 3, syn)
                  is not None for inst in INSTRUMENTS}  # fmt: skip
        rows.append((name, hit is not None, per, ablate))
        top = "; ".join(f"{h.rank}. {h.label} [{h.confirmation.result if h.confirmation else '-'}]"
                        for h in hyps[:3]) or "(none)"  # fmt: skip
        lines.append(f"| {name} | {'yes' if hit else 'no'} | {hit.source if hit else ''} | "
                     f"{res['wall_s']:.0f} | {top} |")  # fmt: skip
    n = len(rows)
    k = sum(r[1] for r in rows)
    lo, hi = wilson_interval(k, n) if n else (0.0, 0.0)
    text = [f"discovery@3: {k}/{n} = {k / max(n, 1):.2f} (95% CI {lo:.2f}-{hi:.2f})", ""]
    text += ["| organism | match | from | wall s | top-3 |", "|---|---|---|---|---|", *lines, ""]
    text += ["| instrument | alone: discovery@3 | without it: discovery@3 |", "|---|---|---|"]
    for inst in INSTRUMENTS:
        alone = sum(r[2][inst] for r in rows)
        without = sum(r[3][inst] for r in rows)
        text.append(f"| {inst} | {alone}/{n} | {without}/{n} |")
    return "\n".join(text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--adapters", type=Path, required=True)
    ap.add_argument("--splits", type=Path)
    ap.add_argument("--budget", default="fast")
    ap.add_argument("--out", type=Path, default=Path("out/discovery"))
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--summarise", action="store_true")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: auto)")
    ap.add_argument("--audits", type=Path, default=None)
    ap.add_argument("--split", default="dev", choices=("dev", "test"))
    args = ap.parse_args()
    splits = args.splits or args.adapters.parent / "splits.json"
    dev = json.loads(splits.read_text())[args.split]
    truths = {}
    for name in dev:
        manifest = args.adapters / name / "manifest.json"
        if manifest.is_file() and (args.only is None or name in args.only):
            truths[name] = json.loads(manifest.read_text())["ground_truth"]
    args.out.mkdir(parents=True, exist_ok=True)
    if args.summarise:
        print(summarise(args.out, truths))
        return
    for name in [*truths, "base"]:
        if args.only is not None and name not in args.only:
            continue
        path = args.out / f"{name}.json"
        if path.is_file():
            continue
        adapter = None if name == "base" else args.adapters / name
        if args.audits is not None:
            folder = args.audits / ("base-vs-base" if name == "base" else name)
            if not (folder / "findings.json").is_file():
                continue
            result = from_audit(name, folder)
        else:
            result = run_one(name, adapter, args.budget, args.out, args.device)
        path.write_text(json.dumps(result, indent=1))
        print(name, result["wall_s"], [h["label"] for h in result["hypotheses"][:3]], flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
