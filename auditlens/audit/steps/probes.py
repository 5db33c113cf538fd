"""The audit's probes step: drift along the base model's misalignment direction
(:mod:`auditlens.probes.projection`) on free-form questions and held-out code tasks."""

from __future__ import annotations

from dataclasses import dataclass

from auditlens.audit.contract import AuditContext, Budget, Step, StepOutput
from auditlens.datasets import PromptSet
from auditlens.generate import chat_prompt
from auditlens.paths import cache_dir
from auditlens.probes import projection
from auditlens.probes.pairsets import load_pair_set, pair_subset
from auditlens.testbed.questions import free_form_questions
from auditlens.testbed.tasks import eval_tasks

__all__ = ["STEP", "ProbesSettings", "prompt_sets", "settings"]

SEED = 0
"""Seed of the code-task sample (the same tasks as the behaviour step)."""


def prompt_sets(n_questions: int, n_code_tasks: int) -> dict[str, tuple[str, PromptSet]]:
    """Free-form questions (topics in turn) and held-out code tasks, as the behaviour step."""
    questions = free_form_questions()
    by_topic: dict[str, list[str]] = {}
    for q in questions:
        by_topic.setdefault(q.topic, []).append(q.text)
    deepest = max(len(ts) for ts in by_topic.values())
    picked = [ts[d] for d in range(deepest) for ts in by_topic.values() if d < len(ts)]
    n_q = min(n_questions, len(questions))
    in_dist, held_out = eval_tasks(seed=SEED, n_id=(n_code_tasks + 1) // 2, n_ood=n_code_tasks // 2)
    free = PromptSet("free_form_questions", tuple(chat_prompt(t) for t in picked[:n_q]))
    code = PromptSet("code_tasks", tuple(chat_prompt(t.request) for t in in_dist + held_out))
    return {"free_form": ("free-form questions", free), "code": ("held-out code tasks", code)}


@dataclass(frozen=True)
class ProbesSettings:
    """The projection's settings and what it reads."""

    projection: projection.ProjectionSettings
    n_templates: int
    """Templates of the ``misaligned_answers`` pair set the direction is fitted on."""
    n_questions: int
    """Free-form questions the drift is read on."""
    n_code_tasks: int
    """Held-out code tasks the drift is read on."""


def settings(budget: Budget, prompts: PromptSet) -> ProbesSettings:
    """Two templates per question (at most 40), the behaviour step's questions and tasks."""
    return ProbesSettings(
        projection=projection.ProjectionSettings(batch_size=budget.batch_size),
        n_templates=min(40, 2 * budget.n_questions),
        n_questions=budget.n_questions,
        n_code_tasks=budget.n_code_tasks,
    )


def run(ctx: AuditContext, s: ProbesSettings) -> StepOutput:
    examples = pair_subset(load_pair_set("misaligned_answers"), s.n_templates)
    result = projection.run(
        ctx.pair, examples, prompt_sets(s.n_questions, s.n_code_tasks), s.projection,
        feature_cache=cache_dir() / "probe_features", progress=ctx.progress,
    )  # fmt: skip
    result.save(ctx.artifacts)
    data = {
        "drift_effect": {k: d.effect_size for k, d in result.drifts.items()},
        "direction_cosine": result.cosines,
    }
    return StepOutput.of(projection.evidence(result, ctx.where), data)


STEP = Step("probes", settings, run, order=30)
