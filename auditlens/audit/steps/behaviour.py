"""The audit's behaviour step: held-out code tasks (Bandit), the likelihood contrast and
free-form answers read by the shipped misaligned-answer probe, each against the base model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from auditlens.audit import artifacts
from auditlens.audit.contract import AuditContext, Budget, Step, StepOutput
from auditlens.behaviour import code, free_form, likelihood
from auditlens.datasets import PromptSet
from auditlens.errors import AuditlensError
from auditlens.generate import BatchSize
from auditlens.probes.scorer import load_scorer
from auditlens.testbed.questions import free_form_questions
from auditlens.testbed.tasks import eval_tasks

__all__ = [
    "STEP", "BehaviourSettings", "cached_answers", "held_out_tasks", "round_robin", "settings",
]  # fmt: skip

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


@dataclass(frozen=True)
class BehaviourSettings:
    """The three checks' settings and how many tasks and questions they ask."""

    code: code.CodeSettings
    likelihood: likelihood.LikelihoodSettings
    free_form: free_form.FreeFormSettings
    n_code_tasks: int
    """Held-out code tasks (half from trained CWE families, half from held-out ones)."""
    n_questions: int
    """Free-form questions (topics in turn)."""


def settings(budget: Budget, prompts: PromptSet) -> BehaviourSettings:
    decoding = {"max_new_tokens": budget.max_new_tokens}  # generation batches: "auto"
    return BehaviourSettings(
        code=code.CodeSettings(max_new_tokens=budget.max_new_tokens),
        likelihood=likelihood.LikelihoodSettings(batch_size=budget.batch_size),
        free_form=free_form.FreeFormSettings(**decoding),
        n_code_tasks=budget.n_code_tasks,
        n_questions=budget.n_questions,
    )


def held_out_tasks(n: int) -> list[Any]:
    """``n`` testbed code tasks: half from trained families (unseen templates), half held out."""
    in_dist, held_out = eval_tasks(seed=SEED, n_id=(n + 1) // 2, n_ood=n // 2)
    return in_dist + held_out


def _scorer(kind: str, ctx: AuditContext, notices: list[str]) -> Any:
    try:
        return load_scorer(kind, ctx.pair, side="base")
    except AuditlensError as err:
        notices.append(f"Probe scorer {kind!r} not used: {err}")
        return None


def cached_answers(
    ctx: AuditContext, prompts: PromptSet, max_new_tokens: int, batch_size: BatchSize
) -> dict[str, list[str]]:
    """Both sides' greedy answers through the artifact cache (each side kept apart, so the
    base's answers are generated once for every fine-tune of it)."""
    gens, _ = artifacts.answers(
        ctx.cache, ctx.pair, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    return gens


def run(ctx: AuditContext, s: BehaviourSettings) -> StepOutput:
    pair, where = ctx.pair, ctx.where
    notices: list[str] = []
    tasks = held_out_tasks(s.n_code_tasks)
    misaligned = _scorer("misaligned_answer", ctx, notices)
    vulnerable = _scorer("vulnerable_code", ctx, notices)
    answer = partial(cached_answers, ctx)
    written = code.run(pair, tasks, s.code, scorer=vulnerable, answer=answer)
    preference = likelihood.run(pair, tasks, s.likelihood)
    questions = round_robin(free_form_questions(), s.n_questions)
    answers = free_form.run(pair, questions, s.free_form, scorer=misaligned, answer=answer)
    for result in (written, preference, answers):
        result.save(ctx.artifacts)
    code_ev = code.evidence(written, where)
    ff_ev = free_form.evidence(answers, where)
    findings = [code_ev.findings[0], *likelihood.evidence(preference, where).findings]
    findings += ff_ev.findings + code_ev.findings[1:]
    rates = {side: r.to_json() for side, r in written.rates.items()}
    sections = code_ev.sections + ff_ev.sections
    evidence = StepOutput(findings=findings, sections=sections, notices=notices)
    return StepOutput.of(evidence, {"insecure_rate": rates})


STEP = Step("behaviour", settings, run, order=40)
