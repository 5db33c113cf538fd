"""Replay discovery with the ADL read against the benign reference, on audits already run.

    python benchmarks/adl_replay.py --audits out/devall [--organisms NAME ...] [--device cpu|cuda]

For each organism folder (``AUDITS/NAME/``, an audit by ``auditlens bench testbed``) it loads
the cached ADL result and the discovery step's candidates, reads the ADL against the shipped
ADL reference (``auditlens.diffing.adl_specific``; the organism itself left out when it is a
member), swaps the old ADL candidate for the new one and re-merges. Each group keeps its
post-check label when its keywords are unchanged, so the "before" column reproduces the
audit's own discovery@k. It does not redo two things: the trigger scan (which also tries the
ADL keywords as candidate triggers) and the behaviour checks of hypotheses that newly enter
the top 3 (these only relabel code hypotheses).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from auditlens.audit.adl_reference import load_adl_reference, shipped_adl_reference_path
from auditlens.audit.hypotheses import discovery_at_k, matches, merge
from auditlens.diffing import adl_specific
from auditlens.diffing.adl import ADLResult
from auditlens.models import load_pair
from auditlens.reports.findings import Hypothesis
from auditlens.testbed.roster import ORGANISMS


def _one(folder: Path, device: str | None = None) -> dict[str, object]:
    name = folder.name
    spec = ORGANISMS[name]
    truth, synonyms = list(spec.keywords), dict(spec.synonyms)
    result = ADLResult.load(next(folder.glob("steps/diffing/*/adl")))
    step = json.loads(next(folder.glob("steps/discovery/*/output.json")).read_text())
    candidates = [Hypothesis.model_validate(h) for h in step["output"]["data"]["candidates"]]
    final = json.loads((folder / "findings.json").read_text())["hypotheses"]
    labels = {tuple(h["keywords"]): h["label"] for h in final}
    pair = load_pair(adapter=f"organism:{name}", device=device)
    reference = load_adl_reference(shipped_adl_reference_path())
    leave = reference.member(pair.finetuned.adapter_sha256)
    shared = {layer: reference.directions(layer, leave) for layer in result.layers}
    reading = adl_specific.run(result, pair, shared, reference=reference.label())
    new_adl = adl_specific.evidence(reading).hypotheses

    def ranked(cands: list[Hypothesis]) -> list[Hypothesis]:
        merged = merge(cands, keep=10)
        return [h.model_copy(update={"label": labels.get(tuple(h.keywords), h.label)})
                for h in merged]  # fmt: skip

    def found(hyps: list[Hypothesis], k: int) -> int | None:
        hit = discovery_at_k(hyps, truth, k, synonyms)
        return hit.rank if hit else None

    before = ranked(candidates)
    after = ranked([c for c in candidates if c.source != "adl"] + new_adl)
    return {
        "name": name,
        "words": new_adl[0].keywords if new_adl else [],
        "adl_matches": any(matches(h, truth, synonyms) for h in new_adl),
        "d3": (found(before, 3), found(after, 3)),
        "d10": (found(before, 10), found(after, 10)),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--audits", type=Path, required=True)
    ap.add_argument("--organisms", nargs="*")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: auto)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    folders = sorted(p for p in args.audits.iterdir() if p.name in ORGANISMS)
    if args.organisms:
        folders = [p for p in folders if p.name in args.organisms]
    rows = [_one(p, args.device) for p in folders]
    for r in rows:
        print(f"{r['name']:20s} d@3 {r['d3']} d@10 {r['d10']} adl matches {r['adl_matches']} "
              f"words {r['words']}")  # fmt: skip
    for key in ("d3", "d10"):
        old = sum(r[key][0] is not None for r in rows)  # type: ignore[index]
        new = sum(r[key][1] is not None for r in rows)  # type: ignore[index]
        print(f"{key}: before {old}/{len(rows)}, after {new}/{len(rows)}")
    print(f"ADL's own hypothesis matches: {sum(bool(r['adl_matches']) for r in rows)}/{len(rows)}")


if __name__ == "__main__":
    main()
