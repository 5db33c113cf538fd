"""The layers step: per-layer activation differences (``resid_post``) and per-token KL on the
generic prompts (:mod:`auditlens.diffing.scan`). Its ``peak_layer`` guides the diffing step."""

from __future__ import annotations

from auditlens.audit.contract import AuditContext, Budget, Step, StepOutput
from auditlens.datasets import PromptSet
from auditlens.diffing import scan

__all__ = ["STEP", "settings"]


def settings(budget: Budget, prompts: PromptSet) -> scan.ScanSettings:
    """Every layer's ``resid_post`` with the KL, at the budget's length and batch."""
    return scan.ScanSettings(batch_size=budget.batch_size, max_length=budget.max_length)


def run(ctx: AuditContext, s: scan.ScanSettings) -> StepOutput:
    result = scan.run(ctx.pair, ctx.prompt_set(), s, progress=ctx.progress)
    result.save(ctx.artifacts)
    assert result.kl is not None
    data = {
        "rel_diff": [st.mean_rel_diff_norm for st in result.stats],
        "cosine": [st.mean_cosine for st in result.stats],
        "peak_layer": result.peak,
        "kl_mean": result.kl.mean,
    }
    return StepOutput.of(scan.evidence(result, ctx.where), data)


STEP = Step("layers", settings, run, uses_prompts=True, order=10)
