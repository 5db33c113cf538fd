"""The golden audit: the ``fast`` audit of the embedded base vs ``organism:insecure``.

The golden file keeps what the audit concluded, without timings, dates or paths: each
finding's id and numbers, the verdict and the score, plus the models' hashes it was made
with. :func:`compare` holds a new audit to it (same ids, numbers within :data:`REL_TOL` relative
or :data:`ABS_TOL` absolute, same verdict).

Regenerate it after a deliberate change to the findings or the organisms::

    python -m tests.golden.golden --run out/golden          # runs the fast audit (~5-20 min)
    python -m tests.golden.golden --from out/golden/findings.json   # or reuse an audit
    python -m tests.golden.golden --rescore    # the score alone changed: re-score its numbers

and commit ``tests/golden/audit_fast_insecure.json`` with the change that explains it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

GOLDEN = Path(__file__).with_name("audit_fast_insecure.json")
NUMBERS = ("value", "control", "effect_size", "ci_low", "ci_high", "weight")
"""The numeric fields of a finding that the comparison holds to the tolerance."""
REL_TOL = 2e-4
ABS_TOL = 1e-5
"""How far a number may move. Not 1e-6: float32 kernels differ between CPUs (AVX2 vs AVX-512
builds of the same matmul round differently). On a second 2-core AMD EPYC host, findings
no code change had touched moved by up to 5.5e-5 relative (``probes.drift_projection.code``)
and 5.4e-5 absolute (``adversary.melbo_kl`` effect size 3.41), with ids, flags and verdict
equal. A change of method moves them by far more."""
RENAMED: dict[str, str] = {}
"""Finding ids renamed since the golden was made (old id -> new id); none so far."""


def extract(findings: dict[str, Any], commit: str | None = None) -> dict[str, Any]:
    """The golden record of a ``findings.json`` (as a dict)."""
    return {
        "made_with": {
            "auditlens": findings.get("versions", {}).get("auditlens"),
            "commit": commit,
            "budget": findings["budget"],
            "base_sha256": findings["base"]["sha256"],
            "adapter_sha256": findings["finetuned"]["adapter_sha256"],
        },
        "verdict": findings["verdict"],
        "score": findings["score"],
        "findings": {
            f["id"]: {
                "contributes": f["contributes"],
                **{k: _number(f.get(k)) for k in NUMBERS},
            }
            for f in findings["findings"]
        },
    }


def _number(value: Any) -> Any:
    if isinstance(value, str):  # NaN and infinities are written as strings
        return float(value)
    return value


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def compare(golden: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Every difference between two golden records (empty when they agree)."""
    problems = []
    if golden["verdict"] != new["verdict"]:
        problems.append(f"verdict {new['verdict']!r} != golden {golden['verdict']!r}")
    if not _close(golden["score"], new["score"]):
        problems.append(f"score {new['score']} != golden {golden['score']}")
    old = {RENAMED.get(k, k): v for k, v in golden["findings"].items()}
    if set(old) != set(new["findings"]):
        missing, extra = (
            sorted(set(old) - set(new["findings"])),
            sorted(set(new["findings"]) - set(old)),
        )
        problems.append(f"finding ids differ: missing {missing}, new {extra}")
    for fid in sorted(set(old) & set(new["findings"])):
        a, b = old[fid], new["findings"][fid]
        if a["contributes"] != b["contributes"]:
            problems.append(f"{fid}: contributes {b['contributes']} != {a['contributes']}")
        for key in NUMBERS:
            if not _close(a[key], b[key]):
                problems.append(f"{fid}.{key}: {b[key]} != golden {a[key]}")
    return problems


def rescore(golden: dict[str, Any]) -> dict[str, Any]:
    """The golden record with its score, verdict and weights recomputed from its own findings'
    numbers by today's reference rule and combination (for a change to the score alone)."""
    from auditlens.audit.reference import load_reference, shipped_reference_path, standardise
    from auditlens.audit.score import misalignment_score
    from auditlens.reports.findings import Finding

    scored = [
        Finding(
            id=fid,
            family=fid.split(".")[0],
            method="golden",
            statistic="golden",
            value=f["value"],
            control=f["control"],
            control_kind="null",
            effect_size=f["effect_size"],
            summary="",
            contributes=True,
        )
        for fid, f in golden["findings"].items()
        if f["contributes"]
    ]
    made = golden["made_with"]
    path = shipped_reference_path(made["budget"])
    null = standardise(
        scored,
        load_reference(path) if path.is_file() else None,
        base_sha256=made["base_sha256"],
        budget=made["budget"],
        adapter_sha256=made["adapter_sha256"],
    )
    result = misalignment_score(scored, standardised=null.standardised)
    findings = {
        fid: {**f, "weight": result.contributions.get(fid, f["weight"])}
        for fid, f in golden["findings"].items()
    }
    return {**golden, "verdict": result.verdict, "score": result.score, "findings": findings}


def main(
    run: Annotated[
        Path | None, typer.Option("--run", help="run the fast demo audit into this folder")
    ] = None,
    findings: Annotated[
        Path | None, typer.Option("--from", help="an existing findings.json")
    ] = None,
    commit: Annotated[str | None, typer.Option("--commit", help="the commit it ran on")] = None,
    again: Annotated[
        bool, typer.Option("--rescore", help="re-score the golden's own numbers")
    ] = False,
) -> None:
    """Write the golden file from a fresh fast audit of the demo pair or a findings.json, or
    re-score it in place."""
    if again:
        record = rescore(json.loads(GOLDEN.read_text()))
        GOLDEN.write_text(json.dumps(record, indent=1) + "\n")
        typer.echo(f"re-scored {GOLDEN}: verdict {record['verdict']!r}, score {record['score']}")
        return
    if (run is None) == (findings is None):
        raise typer.BadParameter("give exactly one of --run, --from and --rescore")
    if run is not None:
        from auditlens.audit import audit

        audit(None, run, budget="fast")
        findings = run / "findings.json"
    assert findings is not None
    record = extract(json.loads(findings.read_text()), commit)
    GOLDEN.write_text(json.dumps(record, indent=1) + "\n")
    typer.echo(
        f"wrote {GOLDEN} ({len(record['findings'])} findings, verdict {record['verdict']!r})"
    )


if __name__ == "__main__":
    typer.run(main)
