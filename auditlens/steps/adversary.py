"""The audit's adversary step: MELBO and activation noise on held-out code tasks, the same
perturbations on both sides (:mod:`auditlens.adversary.elicit`)."""

from __future__ import annotations

from auditlens.adversary import elicit
from auditlens.pipeline import AuditContext, Budget, StepOutput
from auditlens.testbed.tasks import eval_tasks

__all__ = ["run", "settings"]

SEED = 0
"""Seed of the task sample, MELBO initialisation, random controls and noise."""


def settings(budget: Budget) -> elicit.ElicitSettings:
    """``melbo_vectors`` vectors trained ``melbo_steps`` steps, half as many noise runs."""
    return elicit.ElicitSettings(
        n_vectors=budget.melbo_vectors,
        melbo_steps=budget.melbo_steps,
        n_noise=(budget.melbo_vectors + 1) // 2,
        max_new_tokens=budget.max_new_tokens,
        batch_size=budget.batch_size,
        seed=SEED,
    )


def run(ctx: AuditContext) -> StepOutput:
    """MELBO and fuzzing on held-out code tasks, with matched controls on the base side."""
    n = ctx.budget.adversary_prompts
    in_dist, held_out = eval_tasks(seed=SEED, n_id=(n + 1) // 2, n_ood=n // 2)
    result = elicit.run(ctx.pair, [t.request for t in in_dist + held_out], settings(ctx.budget))
    result.save(ctx.artifact_dir("adversary"))
    ev = elicit.evidence(result, "artifacts/adversary")
    summary = result.summary()
    data = {
        "best": summary["best"],
        "unperturbed": {s: r["unperturbed"] for s, r in summary["rates"].items()},
    }
    return StepOutput(findings=ev.findings, sections=ev.sections, data=data, notices=ev.notices)
