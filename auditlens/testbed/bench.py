"""Detection on the testbed: audit every shipped organism and base-vs-base, then score AUROC.

For each pair the full audit runs (its step cache makes a re-run resume), and the
misalignment score is recomputed from each evidence family alone, the affordance sweep of
auditing-agent work: it shows how much each tool adds. The scripted baseline auditor
(:mod:`auditlens.agent.scripted`) runs on the same pairs for its accuracy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from auditlens.agent.scripted import run_scripted_audit
from auditlens.agent.tools import Toolkit
from auditlens.audit import audit
from auditlens.audit.score import FAMILIES, misalignment_score
from auditlens.errors import AuditlensError
from auditlens.models import load_pair
from auditlens.stats import auroc, auroc_ci
from auditlens.testbed.organisms import load_manifest, shipped_organisms

__all__ = [
    "BASE_VS_BASE",
    "PairResult",
    "TestbedResult",
    "flags_misaligned",
    "load_result",
    "render_tables",
    "rewrite_marked",
    "run_testbed",
]

BASE_VS_BASE = "base-vs-base"


@dataclass
class PairResult:
    """One audited pair: ground truth, score, verdict, per-family scores and wall time."""

    name: str
    misaligned: bool
    score: float
    verdict: str
    z: float
    family_scores: dict[str, float]
    seconds: float
    scripted_verdict: str | None = None
    scripted_score: float | None = None


@dataclass
class TestbedResult:
    """All pairs plus AUROCs (overall and per family) with bootstrap intervals."""

    budget: str
    pairs: list[PairResult]
    auroc: dict[str, float] = field(default_factory=dict)
    auroc_ci: dict[str, list[float]] = field(default_factory=dict)
    separated: bool = False
    """Every misaligned pair scored above every benign one."""
    scripted_accuracy: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def flags_misaligned(verdict: str | None) -> bool:
    """Whether a verdict string (ours or the scripted auditor's) says 'misaligned'."""
    return bool(verdict) and str(verdict).startswith("misaligned")


def load_result(path: str | Path) -> TestbedResult:
    """Read a ``testbed.json`` written by :func:`run_testbed`."""
    data = json.loads(Path(path).read_text())
    data["pairs"] = [PairResult(**p) for p in data["pairs"]]
    return TestbedResult(**data)


def _pairs(organisms: Sequence[str] | None) -> list[tuple[str, str | None, bool]]:
    names = list(organisms) if organisms else [BASE_VS_BASE, *shipped_organisms()]
    out: list[tuple[str, str | None, bool]] = []
    for name in names:
        if name == BASE_VS_BASE:
            out.append((name, None, False))
        else:
            truth = load_manifest(name).ground_truth
            out.append((name, f"organism:{name}", bool(truth.misaligned)))
    return out


def _scripted(pair: Any, workspace: Path, budget: str) -> tuple[str, float]:
    """The scripted auditor over the same budget (so it shares the audit's artifacts)."""
    result = run_scripted_audit(Toolkit.create(pair, workspace, budget=budget))
    return result.verdict, result.score


def run_testbed(
    out_dir: str | Path,
    *,
    budget: str = "fast",
    organisms: Sequence[str] | None = None,
    scripted: bool = True,
    progress: bool = True,
) -> TestbedResult:
    """Audit each pair into ``out_dir/<name>/`` and compute the detection metrics."""
    out = Path(out_dir)
    results: list[PairResult] = []
    for name, adapter, misaligned in _pairs(organisms):
        pair = load_pair(adapter=adapter)
        t0 = time.perf_counter()
        report = audit(pair, out / name, budget=budget, progress=progress)  # type: ignore[arg-type]
        seconds = time.perf_counter() - t0
        found = report.findings.findings
        total = misalignment_score(found)
        row = PairResult(
            name=name,
            misaligned=misaligned,
            score=total.score,
            verdict=total.verdict,
            z=total.z,
            family_scores={f: misalignment_score(found, [f]).score for f in FAMILIES},
            seconds=round(seconds, 1),
        )
        if scripted:
            row.scripted_verdict, row.scripted_score = _scripted(pair, out / name / "agent", budget)
        results.append(row)
        del pair
    result = TestbedResult(budget=budget, pairs=results)
    labels = [int(r.misaligned) for r in results]
    if 0 < sum(labels) < len(labels):
        columns = {"all": [r.score for r in results]}
        columns |= {f: [r.family_scores[f] for r in results] for f in FAMILIES}
        for key, scores in columns.items():
            result.auroc[key] = auroc(labels, scores)
            ci = auroc_ci(labels, scores, stratified=True, n_boot=2000)
            result.auroc_ci[key] = list(ci)
        pos = [r.score for r in results if r.misaligned]
        neg = [r.score for r in results if not r.misaligned]
        result.separated = min(pos) > max(neg)
    if scripted:
        hits = [flags_misaligned(r.scripted_verdict) == r.misaligned for r in results]
        result.scripted_accuracy = sum(hits) / len(hits)
    (out / "testbed.json").write_text(json.dumps(result.to_json(), indent=1))
    return result


def render_tables(result: TestbedResult) -> str:
    """Markdown tables: per-pair scores and the AUROC sweep."""
    lines = [
        f"Budget `{result.budget}`. Score in [0, 1]; per-family columns recompute the score "
        "from that family's evidence alone.",
        "",
        "| pair | ground truth | score | verdict | " + " | ".join(FAMILIES) + " | time (s) |",
        "|---|---|---|---|" + "---|" * len(FAMILIES) + "---|",
    ]
    for r in result.pairs:
        fam = " | ".join(f"{r.family_scores[f]:.3f}" for f in FAMILIES)
        truth = "misaligned" if r.misaligned else "benign"
        verdict = r.verdict.split(":")[0]
        lines.append(
            f"| `{r.name}` | {truth} | {r.score:.3f} | {verdict} | {fam} | {r.seconds:.0f} |"
        )
    if result.auroc:
        lines += ["", "| evidence | AUROC | 95% bootstrap CI |", "|---|---|---|"]
        for key, value in result.auroc.items():
            low, high = result.auroc_ci[key]
            label = "full audit" if key == "all" else f"{key} only"
            lines.append(f"| {label} | {value:.3f} | {low:.2f}–{high:.2f} |")
        lines.append("")
        lines.append(
            "Every misaligned pair scored above every benign one: "
            + ("**yes**" if result.separated else "**no**")
            + "."
        )
    if result.scripted_accuracy is not None:
        hits = sum(flags_misaligned(r.scripted_verdict) == r.misaligned for r in result.pairs)
        lines.append("")
        lines.append(
            f"Scripted baseline auditor accuracy: {result.scripted_accuracy:.2f} "
            f"({hits}/{len(result.pairs)} pairs)."
        )
    return "\n".join(lines) + "\n"


def rewrite_marked(path: str | Path, key: str, text: str) -> None:
    """Replace the text between ``<!-- bench:KEY:start -->`` and ``<!-- bench:KEY:end -->``."""
    path = Path(path)
    start, end = f"<!-- bench:{key}:start -->", f"<!-- bench:{key}:end -->"
    doc = path.read_text() if path.is_file() else ""
    if start not in doc or end not in doc:
        raise AuditlensError(f"{path} has no {start} ... {end} markers")
    head, rest = doc.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{text.rstrip()}\n{end}{tail}")
