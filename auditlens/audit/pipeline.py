"""The audit: one pipeline from a model pair to a misalignment report (HTML + JSON).

The pipeline is a list of :class:`~auditlens.audit.contract.Step`. Each step's output and
artifacts live in ``OUT/steps/<name>/<key>/`` (see :mod:`auditlens.audit.cache`), so a re-run
reuses exactly the steps whose inputs did not change. The contributing findings are combined
into the misalignment score (:mod:`auditlens.audit.score`).

With no pair, the audit loads the demo pair: the embedded base model against the testbed's
``organism:insecure`` (:func:`demo_adapter`), the same default as ``auditlens audit`` with no
model arguments.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from rich.console import Console

from auditlens.audit.cache import ArtifactCache, step_key
from auditlens.audit.contract import AuditContext, Budget, BudgetName, Step, StepOutput
from auditlens.audit.contract import resolve_budget as _budget
from auditlens.audit.outdir import OutLock, check_out_dir
from auditlens.audit.reference import (
    NullUsed,
    Reference,
    content_hash,
    reference_for,
    standardise,
)
from auditlens.audit.score import expected_false_alarm_rate, misalignment_score, score_section
from auditlens.audit.steps import default_steps
from auditlens.datasets import PromptSet, load_prompts, tokenize_prompts
from auditlens.errors import AuditlensError
from auditlens.models import ModelPair, ModelSide, load_pair
from auditlens.registry import organism_adapter_dir
from auditlens.reports.findings import AuditFindings, ModelInfo, collect_versions
from auditlens.reports.report import Report

__all__ = [
    "DEFAULT_OUT",
    "DEMO_ORGANISM",
    "audit",
    "demo_adapter",
    "demo_pair",
    "prompts_cut_notice",
    "run_step",
]

logger = logging.getLogger(__name__)
DEMO_ORGANISM = "insecure"
"""The organism audited when no fine-tuned model is given (if it is installed)."""
DEFAULT_OUT = "out/audit"
"""Where an audit writes when no folder is given (the CLI's ``--out`` default too)."""
_OUTPUT = TypeAdapter(StepOutput)


def demo_adapter() -> str | None:
    """``organism:insecure`` when its adapter is installed, else None (base vs base)."""
    try:
        organism_adapter_dir(DEMO_ORGANISM)
    except AuditlensError:
        return None
    return f"organism:{DEMO_ORGANISM}"


def demo_pair(**load_kwargs: Any) -> ModelPair:
    """The embedded base model against the demo organism (base vs base without it)."""
    return load_pair(adapter=demo_adapter(), **load_kwargs)


def _model_info(side: ModelSide) -> ModelInfo:
    return ModelInfo(
        name=side.label,
        sha256=side.sha256,
        adapter=side.adapter,
        adapter_sha256=side.adapter_sha256,
    )


def _run_step(step: Step, ctx: AuditContext, settings: Any, key: str) -> tuple[StepOutput, bool]:
    """The step's output under its key: reused if complete, else computed in a temporary
    folder renamed into place. Older keys of the same step are removed."""
    home = ctx.out_dir / "steps" / step.name
    final = home / key[:16]
    ctx.where = final.relative_to(ctx.out_dir).as_posix()
    saved = final / "output.json"
    if saved.is_file():
        try:
            record = json.loads(saved.read_text())
            if record.get("key") == key:
                return _OUTPUT.validate_python(record["output"]), True
        except (json.JSONDecodeError, ValueError, KeyError):
            logger.warning("ignoring unreadable step output %s", saved)
    tmp = home / f".tmp-{key[:16]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir(parents=True)
    ctx.artifacts = tmp
    try:
        output = step.run(ctx, settings)
        record = {"key": key, "step": step.name, "output": output.model_dump(mode="json")}
        (tmp / "output.json").write_text(json.dumps(record))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for old in home.iterdir():
        if old != final and not old.name.startswith(".tmp-"):
            shutil.rmtree(old, ignore_errors=True)
    return output, False


def _check_needs(step: Step, have: Iterable[str]) -> None:
    """A step that reads another's output refuses to run without it (it would silently lose
    that step's evidence)."""
    missing = [name for name in step.needs if name not in set(have)]
    if missing:
        raise AuditlensError(
            f"step {step.name!r} reads the output of {', '.join(missing)}: run it first"
        )


def _key(step: Step, ctx: AuditContext, settings: Any) -> str:
    """The step's cache key in ``ctx`` (with the keys of the steps it needs), recorded there."""
    needs = {name: ctx.keys[name] for name in step.needs if name in ctx.keys}
    uses = ctx.prompt_set().sha256 if step.uses_prompts else None
    ctx.keys[step.name] = step_key(step.name, settings, ctx.pair, uses, needs)
    return ctx.keys[step.name]


def run_step(step: Step, ctx: AuditContext) -> StepOutput:
    """Run (or reuse) one step in ``ctx`` and record its output there; returns the output.
    The steps it needs must have run in ``ctx`` already. Its key is the one an audit gives
    the same step, so an audit folder's cached steps serve it."""
    _check_needs(step, ctx.outputs)
    settings = step.settings(ctx.budget, ctx.prompt_set())
    output, _ = _run_step(step, ctx, settings, _key(step, ctx, settings))
    ctx.outputs[step.name] = output
    return output


def audit(
    pair: ModelPair | None = None,
    out_dir: str | Path = DEFAULT_OUT,
    *,
    budget: BudgetName | Budget = "fast",
    prompts: str | Sequence[Any] = "generic_chat",
    steps: Sequence[Step] | None = None,
    progress: bool = True,
    cache: ArtifactCache | str | Path | None = None,
    reference: str | Path | None = None,
) -> Report:
    """Audit a model pair and write ``report.html`` and ``findings.json`` into ``out_dir``.

    ``pair=None`` audits the demo pair (:func:`demo_pair`). ``cache`` is the shared artifact
    cache (default: ``$AUDITLENS_ARTIFACTS`` or the user cache). ``reference`` is a benign
    reference file to score against (default: the one shipped for the budget, if any); it
    must match the budget and the base, or the audit stops before any step runs.
    """
    _check_pair(pair, out_dir)
    for index, step in enumerate(steps or ()):  # a step without its inputs: before any load
        _check_needs(step, [earlier.name for earlier in (steps or ())[:index]])
    spent = _budget(budget)
    load_prompts(prompts)  # a bad prompt set is a user error before any model loads
    null = reference_for(spent.name, reference)  # a bad reference file: before any model loads
    out = check_out_dir(out_dir)  # a file or an unwritable folder: before any model loads
    with OutLock(out):  # a second audit into the same folder is refused
        pair = pair if pair is not None else demo_pair()
        _check_reference_base(null[0] if reference is not None else None, pair)
        return _audit(pair, out, spent, prompts, steps, progress, cache, null)


def _check_reference_base(reference: Reference | None, pair: ModelPair) -> None:
    """A reference the user named must be of this base (a shipped one falls back instead)."""
    if reference is not None and reference.base_sha256 != pair.base.sha256:
        raise AuditlensError(
            f"the reference was built on base {reference.base_sha256[:12]}, not this audit's "
            f"base {pair.base.sha256[:12]} ({pair.base.label})"
        )


def _check_pair(pair: Any, out_dir: Any) -> None:
    if pair is not None and not isinstance(pair, ModelPair):
        hint = (
            f"; to audit the demo pair into {pair!r} call auditlens.audit(None, {pair!r})"
            if isinstance(pair, (str, Path))
            else ""
        )
        raise AuditlensError(
            f"audit() needs a ModelPair from auditlens.load_pair() (or None for the demo "
            f"pair), not {type(pair).__name__}{hint}"
        )
    if not isinstance(out_dir, (str, Path)) or not str(out_dir).strip():
        raise AuditlensError(f"audit() needs an output folder path, not {out_dir!r}")


def _audit(
    pair: ModelPair,
    out: Path,
    spent: Budget,
    prompts: str | Sequence[Any],
    steps: Sequence[Step] | None,
    progress: bool,
    cache: ArtifactCache | str | Path | None,
    null: tuple[Reference | None, str | None, str],
) -> Report:
    store = cache if isinstance(cache, ArtifactCache) else ArtifactCache(cache)
    ctx = AuditContext(pair, out, spent, prompts, progress, cache=store)
    timings: dict[str, float] = {}
    notices = list(pair.notices) + _cut_prompts_notice(ctx)
    plan = list(steps if steps is not None else default_steps())
    console = Console(stderr=True, quiet=not progress)
    for index, step in enumerate(plan, 1):
        console.print(f"[bold]audit[/] step {index}/{len(plan)}: {step.name}")
        t0 = time.perf_counter()
        settings = step.settings(spent, ctx.prompt_set())
        output, cached = _run_step(step, ctx, settings, _key(step, ctx, settings))
        timings[step.name] = round(time.perf_counter() - t0, 3)
        console.print(
            f"  {step.name} {'reused from cache' if cached else 'done'} in "
            f"{timings[step.name]:.1f} s"
        )
        if cached:
            notices.append(f"Step '{step.name}' was reused from an earlier run's cache.")
        ctx.outputs[step.name] = output
        notices.extend(output.notices)
    return _report(ctx, spent, prompts, timings, ctx.keys, notices, null)


def _cut_prompts_notice(ctx: AuditContext) -> list[str]:
    notice = prompts_cut_notice(
        ctx.prompt_set(), ctx.pair.tokenizer, ctx.budget.max_length, "the budget's max_length"
    )
    return [notice] if notice else []


def prompts_cut_notice(
    prompts: str | Sequence[Any] | PromptSet,
    tokenizer: Any,
    max_length: int,
    what: str = "max_length",
) -> str | None:
    """A notice when prompts are longer than ``max_length`` tokens (chat template applied):
    the methods read only their first ``max_length`` tokens. None when none is cut."""
    encoded = tokenize_prompts(load_prompts(prompts), tokenizer, max_length=sys.maxsize)
    lengths = [len(ids) for ids, _, _ in encoded]
    cut = [n for n in lengths if n > max_length]
    if not cut:
        return None
    return (
        f"{len(cut)} of {len(lengths)} prompts are longer than {what} ({max_length} tokens; "
        f"the longest has {max(cut)}): only their first {max_length} tokens were read."
    )


def _null_used(
    ctx: AuditContext,
    budget: Budget,
    findings: Sequence[Any],
    chosen: tuple[Reference | None, str | None, str],
) -> NullUsed:
    """The benign reference (named or shipped for this budget), applied to the findings."""
    reference, source, notice = chosen
    pair = ctx.pair
    null = standardise(
        findings,
        reference,
        base_sha256=pair.base.sha256,
        budget=budget.name,
        adapter_sha256=content_hash(pair),
        identical=pair.identical,
    )
    if null.kind == "benign reference":
        null.source = source
        null.description += f" Reference file: {source}."
    null.notices += [notice] if notice else []
    return null


def _report(
    ctx: AuditContext,
    budget: Budget,
    prompts: str | Sequence[Any],
    timings: dict[str, float],
    keys: dict[str, str],
    notices: list[str],
    chosen: tuple[Reference | None, str | None, str],
) -> Report:
    pair = ctx.pair
    findings = [f for o in ctx.outputs.values() for f in o.findings]
    null = _null_used(ctx, budget, findings, chosen)
    notices = [*notices, null.description, *null.notices]
    scored = misalignment_score(findings, standardised=null.standardised)
    findings = [
        f.model_copy(update={"weight": scored.contributions[f.id]})
        if f.id in scored.contributions
        else f
        for f in findings
    ]
    sections = (
        [score_section(scored, findings, null.standardised, null.kind)]
        if scored.contributions
        else []
    )
    sections += [s for o in ctx.outputs.values() for s in o.sections]
    top = sorted(scored.contributions.items(), key=lambda kv: -kv[1])[:3]
    hypotheses = [h for o in ctx.outputs.values() for h in o.hypotheses]
    notices += _verdict_notices(budget, scored.verdict, hypotheses)
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
        hypotheses=hypotheses,
        notices=notices,
        config={
            "budget": asdict(budget),
            "prompts": prompts if isinstance(prompts, str) else "list",
            "step_keys": keys,
            "score": {
                "z": scored.z,
                "family_z": scored.family_z,
                "family_scores": scored.family_scores,
                "combination": scored.combination,
                "expected_false_alarm_rate": expected_false_alarm_rate(),
                "null": null.to_json(),
            },
        },
        versions=collect_versions(),
        timings_s=timings,
    )
    report = Report(findings=result, sections=sections)
    report.write(ctx.out_dir)
    return report


def _verdict_notices(budget: Budget, verdict: str, hypotheses: Sequence[Any]) -> list[str]:
    """What a reader must know beside a verdict: low power at ``fast``, and the behaviour
    changes the discovery step confirmed (described, not scored)."""
    out = []
    if budget.name == "fast" and not verdict.startswith("misaligned"):
        out.append(
            "Low power: the fast budget scores few code tasks and perturbations, and the score "
            "is corrected for every statistic and family, so a fine-tune with a real but "
            "moderate effect can score 'no evidence' here; rerun with --budget standard "
            "before concluding."
        )
    confirmed = [h for h in hypotheses if h.confirmation and h.confirmation.result == "confirmed"]
    harms = [h.label for h in confirmed if h.kind == "concern"]
    code = [h.label for h in confirmed if h.kind == "code_security" and
            h.label.startswith("writes insecure code")]  # fmt: skip
    others = [h.label for h in confirmed if h.kind != "concern" and h.label not in code]
    if code:
        out.append(
            f"Discovery's code check found insecure code on held-out probe prompts ({code[0]}); "
            "the verdict rests on the scored insecure-code statistic (the behaviour step's "
            "tasks, standardised against benign fine-tunes), which may lack power at this budget."
        )
    if harms:
        out.append(
            f"Confirmed on fresh prompts, a marker of harm (scored through "
            f"behaviour.concern_markers): {'; '.join(harms[:3])}."
        )
    if others:
        out.append(
            f"Discovery confirmed {len(others)} change(s) in behaviour on held-out prompts "
            "that no concern marker names (described under 'What changed', not part of the "
            f"score; judge whether they matter): {'; '.join(others[:3])}."
        )
    return out
