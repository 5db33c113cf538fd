"""The audit's behaviour step: held-out code tasks (Bandit), the likelihood contrast and
free-form answers read by the shipped misaligned-answer probe, each against the base model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from auditlens.behaviour import code, free_form, likelihood
from auditlens.errors import AuditlensError
from auditlens.pipeline import AuditContext, StepOutput
from auditlens.probes.scorer import load_scorer
from auditlens.testbed.questions import free_form_questions
from auditlens.testbed.tasks import eval_tasks

__all__ = ["round_robin", "run"]

SEED = 0
"""Seed of the held-out task sample (fixed, so every audit asks the same questions)."""


def round_robin(items: Sequence[Any], n: int) -> list[Any]:
    """``n`` items taking topics in turn (the questions come grouped by topic)."""
    by_topic: dict[str, list[Any]] = {}
    for item in items:
        by_topic.setdefault(item.topic, []).append(item)
    groups = list(by_topic.values())
    picked: list[Any] = []
    depth = 0
    while len(picked) < min(n, len(items)):
        for group in groups:
            if depth < len(group) and len(picked) < n:
                picked.append(group[depth])
        depth += 1
    return picked


def _scorer(kind: str, ctx: AuditContext, notices: list[str]) -> Any:
    try:
        return load_scorer(kind, ctx.pair, side="base")
    except AuditlensError as err:
        notices.append(f"Probe scorer {kind!r} not used: {err}")
        return None


def run(ctx: AuditContext) -> StepOutput:
    """Generate, judge and score both models' answers (see the behaviour package)."""
    budget, pair = ctx.budget, ctx.pair
    art, where = ctx.artifact_dir("behaviour"), "artifacts/behaviour"
    notices: list[str] = []
    n = budget.n_code_tasks
    in_dist, held_out = eval_tasks(seed=SEED, n_id=(n + 1) // 2, n_ood=n // 2)
    tasks = in_dist + held_out
    misaligned = _scorer("misaligned_answer", ctx, notices)
    vulnerable = _scorer("vulnerable_code", ctx, notices)
    decoding = {"max_new_tokens": budget.max_new_tokens, "batch_size": budget.batch_size}
    written = code.run(pair, tasks, code.CodeSettings(**decoding), scorer=vulnerable)
    preference = likelihood.run(pair, tasks, likelihood.LikelihoodSettings(budget.batch_size))
    questions = round_robin(free_form_questions(), budget.n_questions)
    settings = free_form.FreeFormSettings(**decoding)
    answers = free_form.run(pair, questions, settings, scorer=misaligned)
    for result in (written, preference, answers):
        result.save(art)
    code_ev = code.evidence(written, where)
    ff_ev = free_form.evidence(answers, where)
    findings = [code_ev.findings[0], *likelihood.evidence(preference, where).findings]
    findings += ff_ev.findings + code_ev.findings[1:]
    rates = {side: r.to_json() for side, r in written.rates.items()}
    return StepOutput(
        findings=findings,
        sections=code_ev.sections + ff_ev.sections,
        data={"insecure_rate": rates},
        notices=notices,
    )
