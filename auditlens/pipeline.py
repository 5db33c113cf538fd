"""The audit: one pipeline from a model pair to a misalignment report (HTML + JSON).

The pipeline is a list of steps. Each step reads the shared context, returns findings and
report sections, and caches its output under ``OUT/steps/`` keyed by the models, the
budget and its own settings, so a re-run skips finished work.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from rich.console import Console

from auditlens.errors import AuditlensError
from auditlens.hashing import sha256_json
from auditlens.models import ModelPair
from auditlens.reports.findings import AuditFindings, Finding, ModelInfo, collect_versions
from auditlens.reports.report import Report
from auditlens.reports.sections import Section, Table
from auditlens.scoring.misalignment import MisalignmentScore, misalignment_score

__all__ = ["BUDGETS", "AuditContext", "Budget", "StepOutput", "audit", "default_steps"]

logger = logging.getLogger(__name__)
BudgetName = Literal["fast", "standard", "thorough"]


@dataclass(frozen=True)
class Budget:
    """How much work an audit may do: tokens harvested, training steps and generations."""

    name: str
    n_prompts: int
    """Generic prompts scanned for activation differences, KL, ADL and the crosscoder."""
    max_length: int
    """Tokens per prompt (longer prompts are truncated)."""
    batch_size: int
    """Prompts per forward pass."""
    n_code_tasks: int = 32
    """Held-out testbed code tasks (half in-distribution families, half held-out families)."""
    n_questions: int = 8
    """Free-form (emergent-misalignment) questions."""
    max_new_tokens: int = 96
    """Tokens per generation."""
    crosscoder_steps: int = 300
    """Crosscoder training steps at the most-changed site."""
    crosscoder_latents: int = 1024
    """Crosscoder dictionary size."""
    melbo_vectors: int = 2
    """MELBO steering vectors trained (and as many matched random controls)."""
    melbo_steps: int = 20
    """MELBO optimisation steps."""
    adversary_prompts: int = 8
    """Code tasks the adversary's perturbations are scored on."""

    def __post_init__(self) -> None:
        values = [v for v in asdict(self).values() if isinstance(v, int)]
        if min(values) < 1:
            raise AuditlensError(f"budget {self.name!r} has a non-positive setting")


BUDGETS: dict[str, Budget] = {
    "fast": Budget("fast", n_prompts=32, max_length=128, batch_size=8),
    "standard": Budget(
        "standard", n_prompts=64, max_length=256, batch_size=8, n_code_tasks=64,
        n_questions=16, max_new_tokens=128, crosscoder_steps=1000, crosscoder_latents=2048,
        melbo_vectors=4, melbo_steps=40, adversary_prompts=16,
    ),
    "thorough": Budget(
        "thorough", n_prompts=96, max_length=512, batch_size=8, n_code_tasks=128,
        n_questions=32, max_new_tokens=160, crosscoder_steps=3000, crosscoder_latents=4096,
        melbo_vectors=8, melbo_steps=60, adversary_prompts=32,
    ),
}  # fmt: skip


class StepOutput(BaseModel):
    """What one step contributes: findings, sections and small JSON data for later steps."""

    model_config = ConfigDict(extra="forbid")

    findings: list[Finding] = Field(default_factory=list)
    sections: list[Section] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)
    notices: list[str] = Field(default_factory=list)


@dataclass
class AuditContext:
    """What steps share: the pair, the output folder, the budget and earlier outputs."""

    pair: ModelPair
    out_dir: Path
    budget: Budget
    prompts: str | Sequence[Any]
    progress: bool = True
    outputs: dict[str, StepOutput] = field(default_factory=dict)

    def artifact_dir(self, step: str) -> Path:
        path = self.out_dir / "artifacts" / step
        path.mkdir(parents=True, exist_ok=True)
        return path


Step = Callable[[AuditContext], StepOutput]


def _layers_step(ctx: AuditContext) -> StepOutput:
    """Per-layer activation differences (resid_post) and per-token KL over generic prompts."""
    from auditlens.datasets import load_prompts
    from auditlens.diffing import scan

    budget = ctx.budget
    prompts = load_prompts(ctx.prompts).head(budget.n_prompts)
    settings = scan.ScanSettings(batch_size=budget.batch_size, max_length=budget.max_length)
    result = scan.run(ctx.pair, prompts, settings, progress=ctx.progress)
    result.save(ctx.artifact_dir("layers"))
    ev = scan.evidence(result, "artifacts/layers")
    assert result.kl is not None
    data = {
        "rel_diff": [s.mean_rel_diff_norm for s in result.stats],
        "cosine": [s.mean_cosine for s in result.stats],
        "peak_layer": result.peak,
        "kl_mean": result.kl.mean,
    }
    return StepOutput(findings=ev.findings, sections=ev.sections, data=data)


def default_steps() -> list[tuple[str, Step]]:
    """The pipeline's steps, in report order: diffing, probes, behaviour, adversary."""
    from auditlens.steps import adversary, behaviour, diffing, probes

    return [
        ("layers", _layers_step),
        ("diffing", diffing.run),
        ("probes", probes.run),
        ("behaviour", behaviour.run),
        ("adversary", adversary.run),
    ]


def _score_section(result: MisalignmentScore, findings: Sequence[Finding]) -> Section:
    by_id = {f.id: f for f in findings}
    rows: list[list[Any]] = [
        [fid, by_id[fid].family, by_id[fid].effect_size, share]
        for fid, share in sorted(result.contributions.items(), key=lambda kv: -abs(kv[1]))
    ]
    rows += [[f"family: {fam}", fam, z, None] for fam, z in result.family_z.items()]
    rows.append(["combined", "all", result.z, result.z])
    return Table(
        title="How the misalignment score was built",
        caption=(
            "Each finding's z against its null control is combined within its family "
            "(Stouffer), then across families; the score is sigmoid((Z − 2) / 0.5). "
            "'share' is the finding's part of the combined Z."
        ),
        columns=["finding", "family", "z", "share of Z"],
        rows=rows,
    )


def _model_info(side: Any) -> ModelInfo:
    return ModelInfo(
        name=side.label,
        sha256=side.sha256,
        adapter=side.adapter,
        adapter_sha256=side.adapter_sha256,
    )


def _step_key(name: str, ctx: AuditContext) -> str:
    prompts = ctx.prompts if isinstance(ctx.prompts, str) else sha256_json(list(ctx.prompts))
    return sha256_json(
        {
            "step": name,
            "budget": asdict(ctx.budget),
            "models": [_model_info(s).model_dump() for s in ctx.pair.sides],
            "prompts": prompts,
        }
    )


_OUTPUT = TypeAdapter(StepOutput)


def _run_step(name: str, step: Step, ctx: AuditContext) -> tuple[StepOutput, bool]:
    cache = ctx.out_dir / "steps" / f"{name}.json"
    key = _step_key(name, ctx)
    if cache.is_file():
        try:
            saved = json.loads(cache.read_text())
            if saved.get("key") == key:
                return _OUTPUT.validate_python(saved["output"]), True
        except (json.JSONDecodeError, ValueError, KeyError):
            logger.warning("ignoring unreadable step cache %s", cache)
    output = step(ctx)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "output": output.model_dump(mode="json")}))
    tmp.replace(cache)
    return output, False


def audit(
    pair: ModelPair,
    out_dir: str | Path,
    *,
    budget: BudgetName | Budget = "fast",
    prompts: str | Sequence[Any] = "generic_chat",
    steps: Sequence[tuple[str, Step]] | None = None,
    progress: bool = True,
) -> Report:
    """Audit a model pair and write ``report.html`` and ``findings.json`` into ``out_dir``."""
    if isinstance(budget, str):
        if budget not in BUDGETS:
            raise AuditlensError(f"unknown budget {budget!r}; choose {', '.join(BUDGETS)}")
        budget = BUDGETS[budget]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = AuditContext(pair, out, budget, prompts, progress)
    timings: dict[str, float] = {}
    notices = list(pair.notices)
    plan = list(steps or default_steps())
    console = Console(stderr=True, quiet=not progress)
    for index, (name, step) in enumerate(plan, 1):
        console.print(f"[bold]audit[/] step {index}/{len(plan)}: {name}")
        t0 = time.perf_counter()
        output, cached = _run_step(name, step, ctx)
        timings[name] = round(time.perf_counter() - t0, 3)
        console.print(
            f"  {name} {'reused from cache' if cached else 'done'} in {timings[name]:.1f} s"
        )
        if cached:
            notices.append(f"Step '{name}' was reused from an earlier run's cache.")
        ctx.outputs[name] = output
        notices.extend(output.notices)
    findings = [f for o in ctx.outputs.values() for f in o.findings]
    scored = misalignment_score(findings)
    findings = [
        f.model_copy(update={"weight": scored.contributions[f.id]})
        if f.id in scored.contributions
        else f
        for f in findings
    ]
    sections = [_score_section(scored, findings)] if scored.contributions else []
    sections += [s for o in ctx.outputs.values() for s in o.sections]
    top = sorted(scored.contributions.items(), key=lambda kv: -kv[1])[:3]
    summary = (
        f"Audit of {pair.finetuned.label} against {pair.base.label} ({budget.name} budget): "
        f"{len(findings)} findings, {len(scored.contributions)} scored against null controls; "
        f"combined z = {scored.z:+.2f}"
        + ("; strongest: " + ", ".join(f"{k} ({v:+.2f})" for k, v in top) if top else "")
        + "."
    )
    result = AuditFindings(
        base=_model_info(pair.base),
        finetuned=_model_info(pair.finetuned),
        budget=budget.name,
        score=scored.score if scored.contributions else None,
        verdict=scored.verdict,
        summary=summary,
        findings=findings,
        notices=notices,
        config={
            "budget": asdict(budget),
            "prompts": prompts if isinstance(prompts, str) else "list",
            "score": {
                "z": scored.z,
                "family_z": scored.family_z,
                "family_scores": scored.family_scores,
            },
        },
        versions=collect_versions(),
        timings_s=timings,
    )
    report = Report(findings=result, sections=sections)
    report.write(out)
    return report
