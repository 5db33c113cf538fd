"""The adversary step: MELBO and activation noise on held-out code tasks, the same
perturbations on both sides (:mod:`auditlens.adversary.elicit`). The MELBO vectors come from
the shared artifact cache."""

from __future__ import annotations

from auditlens.adversary import elicit
from auditlens.audit import artifacts
from auditlens.audit.contract import AuditContext, Budget, Step, StepOutput
from auditlens.datasets import PromptSet
from auditlens.testbed.tasks import eval_tasks

__all__ = ["STEP", "settings"]

SEED = 0
"""Seed of the task sample, MELBO initialisation, random controls and noise."""


def settings(budget: Budget, prompts: PromptSet) -> tuple[int, elicit.ElicitSettings]:
    """(tasks scored, the search): ``melbo_vectors`` vectors, half as many noise runs."""
    search = elicit.ElicitSettings(
        n_vectors=budget.melbo_vectors,
        melbo_steps=budget.melbo_steps,
        n_noise=(budget.melbo_vectors + 1) // 2,
        max_new_tokens=budget.max_new_tokens,
        batch_size=budget.batch_size,
        seed=SEED,
    )
    return budget.adversary_prompts, search


def run(ctx: AuditContext, s: tuple[int, elicit.ElicitSettings]) -> StepOutput:
    n, search = s
    in_dist, held_out = eval_tasks(seed=SEED, n_id=(n + 1) // 2, n_ood=n // 2)
    prompts = [t.request for t in in_dist + held_out]
    config = elicit.melbo_config(ctx.pair, prompts, search)
    train = elicit.training_prompts(prompts, search)
    melbo, melbo_dir, _ = artifacts.melbo_vectors(ctx.cache, ctx.pair, train, config)
    result = elicit.run(ctx.pair, prompts, search, melbo=melbo)
    result.save(ctx.artifacts)
    summary = result.summary()
    data = {"best": summary["best"], "melbo_key": melbo_dir.name}
    return StepOutput.of(elicit.evidence(result, ctx.where), data)


STEP = Step("adversary", settings, run, order=50)
