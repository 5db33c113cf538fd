"""The audit's probes step: drift along the base model's misalignment direction
(:mod:`auditlens.probes.projection`) on free-form questions and held-out code tasks."""

from __future__ import annotations

from auditlens.datasets import PromptSet
from auditlens.generate import chat_prompt
from auditlens.paths import cache_dir
from auditlens.pipeline import AuditContext, StepOutput
from auditlens.probes import projection
from auditlens.probes.pairsets import load_pair_set, pair_subset
from auditlens.testbed.questions import free_form_questions
from auditlens.testbed.tasks import eval_tasks

__all__ = ["prompt_sets", "run"]

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


def run(ctx: AuditContext) -> StepOutput:
    """Drift along the misalignment direction and its transfer between the two models."""
    budget = ctx.budget
    examples = pair_subset(load_pair_set("misaligned_answers"), min(40, 2 * budget.n_questions))
    settings = projection.ProjectionSettings(batch_size=budget.batch_size)
    result = projection.run(
        ctx.pair, examples, prompt_sets(budget.n_questions, budget.n_code_tasks), settings,
        feature_cache=cache_dir() / "probe_features", progress=ctx.progress,
    )  # fmt: skip
    result.save(ctx.artifact_dir("probes"))
    ev = projection.evidence(result, "artifacts/probes")
    data = {
        "drift_effect": {k: d.effect_size for k, d in result.drifts.items()},
        "direction_cosine": result.cosines,
    }
    return StepOutput(findings=ev.findings, sections=ev.sections, data=data, notices=ev.notices)
