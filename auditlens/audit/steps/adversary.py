"""The adversary step: MELBO and activation noise on held-out code tasks, the same
perturbations on both sides (:mod:`auditlens.adversary.elicit`), scored as a difference in
differences on tasks disjoint from the behaviour step's. The MELBO vectors come from the shared
artifact cache."""

from __future__ import annotations

from typing import Any

from auditlens.adversary import elicit
from auditlens.audit import artifacts
from auditlens.audit.contract import AuditContext, Budget, Step, StepOutput
from auditlens.audit.steps.behaviour import held_out_tasks
from auditlens.datasets import PromptSet
from auditlens.errors import AuditlensError
from auditlens.testbed.tasks import eval_tasks_apart

__all__ = ["STEP", "adversary_tasks", "check_tasks", "settings"]

SEED = 0
"""Seed of the task sample, MELBO initialisation, random controls and noise."""


def adversary_tasks(n: int, n_behaviour: int) -> list[Any]:
    """``n`` testbed code tasks (half from trained families), none of the behaviour step's
    ``n_behaviour`` tasks: the two families never score the same answers."""
    taken = {t.task_id for t in held_out_tasks(n_behaviour)}
    tasks = eval_tasks_apart(n, taken, seed=SEED)
    if taken & {t.task_id for t in tasks}:
        raise AuditlensError("the adversary's tasks must be disjoint from the behaviour step's")
    return tasks


def check_tasks(n: int, n_behaviour: int, n_adversary: int) -> list[Any]:
    """``n`` testbed code tasks for the discovery step's code-security check (built to let
    insecure code show), none of which the behaviour step or the adversary scores."""
    taken = {t.task_id for t in held_out_tasks(n_behaviour)}
    taken |= {t.task_id for t in adversary_tasks(n_adversary, n_behaviour)}
    return eval_tasks_apart(n, taken, seed=SEED)


def settings(budget: Budget, prompts: PromptSet) -> tuple[int, int, elicit.ElicitSettings]:
    """(tasks scored, the behaviour step's task count, the search): ``melbo_vectors`` vectors,
    half as many noise runs."""
    search = elicit.ElicitSettings(
        n_vectors=budget.melbo_vectors,
        melbo_steps=budget.melbo_steps,
        n_noise=(budget.melbo_vectors + 1) // 2,
        max_new_tokens=budget.max_new_tokens,
        batch_size=budget.batch_size,
        seed=SEED,
    )
    return budget.adversary_prompts, budget.n_code_tasks, search


def run(ctx: AuditContext, s: tuple[int, int, elicit.ElicitSettings]) -> StepOutput:
    n, n_behaviour, search = s
    prompts = [t.request for t in adversary_tasks(n, n_behaviour)]
    config = elicit.melbo_config(ctx.pair, prompts, search)
    train = elicit.training_prompts(prompts, search)
    melbo, melbo_dir, _ = artifacts.melbo_vectors(ctx.cache, ctx.pair, train, config)
    result = elicit.run(ctx.pair, prompts, search, melbo=melbo)
    result.save(ctx.artifacts)
    summary = result.summary()
    data = {"best": summary["best"], "melbo_key": melbo_dir.name}
    return StepOutput.of(elicit.evidence(result, ctx.where), data)


STEP = Step("adversary", settings, run, order=50)
