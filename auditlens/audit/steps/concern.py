"""The concern step: do the fine-tune's answers carry markers of harm more often than the
base's (:mod:`auditlens.behaviour.concern`)? Stage one reads both models' answers to the
probe library: the discovery instruments' prompts (shared through the artifact cache, so not
generated twice) plus held-out prompts of every domain. Stage two answers fresh prompts of the
domains where stage one saw the fine-tune's markers, so a behaviour confined to one domain
(money advice, product recommendations, claims to agree with) has prompts to show on. Each
marker seen becomes a candidate hypothesis for the discovery step, tested by the follow-up."""

from __future__ import annotations

from dataclasses import dataclass

from auditlens.audit import artifacts
from auditlens.audit.contract import AuditContext, Budget, Step, StepOutput
from auditlens.behaviour import concern
from auditlens.datasets import PromptSet
from auditlens.diffing import divergent
from auditlens.probe_library import ProbePrompt, load_probe_library

__all__ = ["STEP", "ConcernSettings", "settings"]


@dataclass(frozen=True)
class ConcernSettings:
    """Which probe prompts both models answer, and how long."""

    per_domain: int
    """The discovery instruments' prompts per domain (their answers are reused)."""
    extra_per_domain: int
    """Held-out prompts per domain added to stage one."""
    follow_up_domains: int
    """Domains followed up in stage two (every remaining library prompt of each)."""
    max_new_tokens: int
    batch_size: int = divergent.DivergentSettings.batch_size
    """Prompts per generation batch (the discovery step's, so its answers are reused)."""


def settings(budget: Budget, prompts: PromptSet) -> ConcernSettings:
    """The discovery step's prompts plus at least four held-out prompts per domain; two
    domains followed up."""
    ppd = budget.probe_per_domain
    return ConcernSettings(ppd, max(4, ppd), 2, budget.probe_new_tokens)


def run(ctx: AuditContext, s: ConcernSettings) -> StepOutput:
    def answers(probes: list[ProbePrompt]) -> dict[str, list[str]]:
        gens, _, _ = artifacts.probe_generations(
            ctx.cache, ctx.pair, probes, max_new_tokens=s.max_new_tokens, batch_size=s.batch_size
        )
        return gens

    used = load_probe_library(s.per_domain)
    seen = {p.text for p in used}
    extra = [p for p in load_probe_library(s.per_domain + s.extra_per_domain) if p.text not in seen]
    first = [*used, *extra]
    both = [answers(used), answers(extra)]
    gens = {side: both[0][side] + both[1][side] for side in ("finetuned", "base")}
    result = concern.run(gens, [p.text for p in first], [p.domain for p in first])
    domains = tuple(result.follow_up_domains(s.follow_up_domains))
    if domains:
        asked = {p.text for p in first}
        fresh = [p for p in load_probe_library(only=domains) if p.text not in asked]
        if fresh:
            result = concern.with_follow_up(
                result, answers(fresh), [p.text for p in fresh], [p.domain for p in fresh]
            )
    result.save(ctx.artifacts)
    data = {
        "z": result.z,
        "drivers": [m.name for m in result.drivers()],
        "candidates": [h.model_dump(mode="json") for h in concern.hypotheses(result)],
    }
    return StepOutput.of(concern.evidence(result, ctx.where), data)


STEP = Step("concern", settings, run, order=24)
