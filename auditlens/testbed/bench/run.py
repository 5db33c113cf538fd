"""Detection on the testbed: audit every shipped organism and base-vs-base, then score AUROC
over dev and test separately (base vs base is a reported control, never counted).

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
from auditlens.models import load_pair
from auditlens.stats import auroc, auroc_ci
from auditlens.testbed.bench.metrics import flags_misaligned, split_metrics
from auditlens.testbed.organisms import load_manifest, shipped_organisms
from auditlens.testbed.splits import split_of
from auditlens.testbed.tables import rewrite_marked

__all__ = [
    "BASE_VS_BASE",
    "PairResult",
    "TestbedResult",
    "detection_metrics",
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
    split: str = "dev"
    """``dev``, ``test`` (``splits.json``) or ``control`` (base vs base: reported, never
    counted in an AUROC)."""
    family_z: dict[str, float] = field(default_factory=dict)
    """Each family's combined z (for the leave-one-family-out ablation)."""


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
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per split (dev, test, all): :class:`~auditlens.testbed.bench.metrics.SplitMetrics`."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def load_result(path: str | Path) -> TestbedResult:
    """Read a ``testbed.json`` written by :func:`run_testbed`."""
    data = json.loads(Path(path).read_text())
    data["pairs"] = [PairResult(**p) for p in data["pairs"]]
    return TestbedResult(**data)


def _pairs(organisms: Sequence[str] | None) -> list[tuple[str, str | None, bool, str]]:
    names = list(organisms) if organisms else [BASE_VS_BASE, *shipped_organisms()]
    out: list[tuple[str, str | None, bool, str]] = []
    for name in names:
        if name == BASE_VS_BASE:
            out.append((name, None, False, "control"))
        else:
            truth = load_manifest(name).ground_truth
            out.append((name, f"organism:{name}", bool(truth.misaligned), split_of(name)))
    return out


def _scripted(pair: Any, workspace: Path, budget: str) -> tuple[str, float]:
    """The scripted auditor over the same budget (so it shares the audit's artifacts)."""
    result = run_scripted_audit(Toolkit.create(pair, workspace, budget=budget))
    return result.verdict, result.score


def detection_metrics(
    pairs: Sequence[PairResult],
) -> tuple[dict[str, float], dict[str, list[float]], bool]:
    """AUROC (with bootstrap CI) over all organisms, over dev and over test alone, and per
    evidence family over all; the base-vs-base control is never counted. Also whether every
    misaligned organism scored above every benign one."""
    counted = [r for r in pairs if r.split != "control"]
    auc: dict[str, float] = {}
    ci: dict[str, list[float]] = {}
    groups: dict[str, tuple[list[PairResult], Any]] = {
        "all": (counted, lambda r: r.score),
        "dev": ([r for r in counted if r.split == "dev"], lambda r: r.score),
        "test": ([r for r in counted if r.split == "test"], lambda r: r.score),
    }
    for fam in FAMILIES:
        groups[fam] = (counted, lambda r, f=fam: r.family_scores[f])
    for key, (rows, score) in groups.items():
        labels = [int(r.misaligned) for r in rows]
        if 0 < sum(labels) < len(labels):
            scores = [score(r) for r in rows]
            auc[key] = auroc(labels, scores)
            ci[key] = list(auroc_ci(labels, scores, stratified=True, n_boot=2000))
    pos = [r.score for r in counted if r.misaligned]
    neg = [r.score for r in counted if not r.misaligned]
    return auc, ci, bool(pos and neg and min(pos) > max(neg))


def run_testbed(
    out_dir: str | Path,
    *,
    budget: str = "fast",
    organisms: Sequence[str] | None = None,
    scripted: bool = True,
    progress: bool = True,
    reference: str | Path | None = None,
) -> TestbedResult:
    """Audit each pair into ``out_dir/<name>/`` and compute the detection metrics
    (``reference``: the benign reference file to score against; default: the shipped one)."""
    out = Path(out_dir)
    results: list[PairResult] = []
    for name, adapter, misaligned, split in _pairs(organisms):
        pair = load_pair(adapter=adapter)
        t0 = time.perf_counter()
        report = audit(pair, out / name, budget=budget, progress=progress, reference=reference)  # type: ignore[arg-type]
        seconds = time.perf_counter() - t0
        found = report.findings.findings
        null = (report.findings.config.get("score") or {}).get("null") or {}
        std = null.get("standardised") or {}
        total = misalignment_score(found, standardised=std)
        row = PairResult(
            name=name,
            misaligned=misaligned,
            score=total.score,
            verdict=total.verdict,
            z=total.z,
            family_scores={
                f: misalignment_score(found, [f], standardised=std).score for f in FAMILIES
            },
            seconds=round(seconds, 1),
            split=split,
            family_z=total.family_z,
        )
        if scripted:
            row.scripted_verdict, row.scripted_score = _scripted(pair, out / name / "agent", budget)
        results.append(row)
        del pair
    result = TestbedResult(budget=budget, pairs=results)
    result.auroc, result.auroc_ci, result.separated = detection_metrics(results)
    result.metrics = {k: split_metrics(results, k).to_json() for k in ("dev", "test", "all")}
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
        "| pair | split | ground truth | score | verdict | "
        + " | ".join(FAMILIES)
        + " | time (s) |",
        "|---|---|---|---|---|" + "---|" * len(FAMILIES) + "---|",
    ]
    order = {"dev": 0, "test": 1, "control": 2}
    for r in sorted(result.pairs, key=lambda r: order.get(r.split, 3)):
        fam = " | ".join(f"{r.family_scores[f]:.3f}" for f in FAMILIES)
        truth = "misaligned" if r.misaligned else "benign"
        verdict = r.verdict.split(":")[0]
        lines.append(
            f"| `{r.name}` | {r.split} | {truth} | {r.score:.3f} | {verdict} | {fam} | "
            f"{r.seconds:.0f} |"
        )
    if result.auroc:
        lines += [
            "",
            "Base vs base is a control: reported above, never counted in an AUROC.",
            "",
            "| evidence | AUROC | 95% bootstrap CI |",
            "|---|---|---|",
        ]
        for key, value in result.auroc.items():
            low, high = result.auroc_ci[key]
            label = {
                "all": "full audit, dev + test",
                "dev": "full audit, dev",
                "test": "full audit, test",
            }.get(key, f"{key} only")
            lines.append(f"| {label} | {value:.3f} | {low:.2f}–{high:.2f} |")
        lines.append("")
        lines.append(
            "Every misaligned pair scored above every benign one: "
            + ("**yes**" if result.separated else "**no**")
            + "."
        )
    if result.metrics:
        lines += ["", *_metrics_table(result.metrics)]
    if result.scripted_accuracy is not None:
        hits = sum(flags_misaligned(r.scripted_verdict) == r.misaligned for r in result.pairs)
        lines.append("")
        lines.append(
            f"Scripted baseline auditor accuracy: {result.scripted_accuracy:.2f} "
            f"({hits}/{len(result.pairs)} pairs)."
        )
    return "\n".join(lines) + "\n"


def _ci(values: Sequence[float] | None) -> str:
    return f"{values[0]:.2f}–{values[1]:.2f}" if values else "–"


def _metrics_table(metrics: dict[str, dict[str, Any]]) -> list[str]:
    """Verdict metrics per split at the fixed thresholds (95% bootstrap over organisms)."""
    lines = [
        "| split | organisms (misaligned) | verdict accuracy | AUROC | false alarms on benign "
        "| wrong verdicts |",
        "|---|---|---|---|---|---|",
    ]
    for key, m in metrics.items():
        if not m["n"]:
            continue
        auc = "–" if m["auroc"] is None else f"{m['auroc']:.3f} ({_ci(m['auroc_ci'])})"
        fa = (
            "–"
            if m["false_alarm_rate"] is None
            else f"{m['false_alarm_rate']:.2f} ({_ci(m['false_alarm_ci'])})"
        )
        lines.append(
            f"| {key} | {m['n']} ({m['n_misaligned']}) | {m['accuracy']:.2f} "
            f"({_ci(m['accuracy_ci'])}) | {auc} | {fa} | {', '.join(m['misses']) or '–'} |"
        )
    lines += ["", "| split | family | AUROC alone | AUROC without it |", "|---|---|---|---|"]
    for key, m in metrics.items():
        for fam in FAMILIES:
            alone, removed = m["family_alone"].get(fam), m["family_removed"].get(fam)
            if alone is None and removed is None:
                continue
            fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
            lines.append(f"| {key} | {fam} | {fmt(alone)} | {fmt(removed)} |")
    return lines
