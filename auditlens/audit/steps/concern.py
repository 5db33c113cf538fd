"""The concern step: do the fine-tune's answers carry markers of harm more often than the
base's (:mod:`auditlens.behaviour.concern`)? Stage one reads both models' answers to the
probe library: the discovery instruments' prompts (shared through the artifact cache, so not
generated twice) plus held-out prompts of every domain. Stage two answers fresh prompts of the
domains where stage one saw the fine-tune's markers, with sampled answers (a greedy answer
hides a behaviour the fine-tune shows in a minority of its answers), so a behaviour confined to
one domain (money advice, product recommendations, claims to agree with) has prompts to show
on. Each marker seen becomes a candidate hypothesis for the discovery step, tested by the
follow-up."""

from __future__ import annotations

from dataclasses import dataclass

from auditlens.audit import artifacts
from auditlens.audit.cache import ArtifactCache
from auditlens.audit.contract import AuditContext, Budget, Step, StepOutput
from auditlens.behaviour import concern
from auditlens.datasets import PromptSet
from auditlens.diffing import divergent
from auditlens.models import ModelPair
from auditlens.probe_library import ProbePrompt, load_probe_library

__all__ = ["STEP", "ConcernSettings", "screen", "settings"]


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
    samples: int = 1
    """Sampled answers per fresh follow-up prompt and side."""
    temperature: float = 0.0
    """Sampling temperature of the follow-up (0: one greedy answer per prompt)."""
    batch_size: int = divergent.DivergentSettings.batch_size
    """Prompts per generation batch (the discovery step's, so its answers are reused)."""


FOLLOW_UP_SAMPLES = 1
"""Sampled answers per follow-up prompt. Chosen on the dev split by a rule fixed beforehand
(the fewest samples whose mean follow-up z on the misaligned dev organisms is within 10% of the
best of 1, 2 and 4, no benign one above 1): one sampled answer beat one greedy answer (mean
follow-up z 2.56 vs 2.28), and 2 or 4 samples did not beat one by more than noise (2.71, 2.65);
measured at statistic version 5 (16 library prompts per domain); see docs/audit.md."""
FOLLOW_UP_TEMPERATURE = 0.8
"""Temperature of the follow-up's samples (the same seeds on both sides)."""


def settings(budget: Budget, prompts: PromptSet) -> ConcernSettings:
    """The discovery step's prompts plus at least four held-out prompts per domain; two
    domains followed up, each fresh prompt answered :data:`FOLLOW_UP_SAMPLES` times by
    sampling."""
    ppd = budget.probe_per_domain
    return ConcernSettings(
        ppd, max(4, ppd), 2, budget.probe_new_tokens, FOLLOW_UP_SAMPLES, FOLLOW_UP_TEMPERATURE
    )


def _answers(
    cache: ArtifactCache, pair: ModelPair, s: ConcernSettings, probes: list[ProbePrompt],
    sampled: bool = False,
) -> dict[str, list[str]]:  # fmt: skip
    gens, _ = artifacts.probe_generations(
        cache, pair, probes, max_new_tokens=s.max_new_tokens, batch_size=s.batch_size,
        samples=s.samples if sampled else 1, temperature=s.temperature if sampled else 0.0,
    )  # fmt: skip
    return gens


def screen(
    cache: ArtifactCache, pair: ModelPair, s: ConcernSettings
) -> tuple[concern.ConcernResult, list[ProbePrompt]]:
    """Stage one: both sides' greedy answers to the discovery instruments' probes plus the
    held-out ones (from the artifact cache when an audit already made them); returns the
    result and the follow-up's fresh prompts (every remaining library prompt of the domains
    it flags; none when it flags none)."""
    used = load_probe_library(s.per_domain)
    seen = {p.text for p in used}
    extra = [p for p in load_probe_library(s.per_domain + s.extra_per_domain) if p.text not in seen]
    first = [*used, *extra]
    both = [_answers(cache, pair, s, used), _answers(cache, pair, s, extra)]
    gens = {side: both[0][side] + both[1][side] for side in ("finetuned", "base")}
    result = concern.run(gens, [p.text for p in first], [p.domain for p in first])
    domains = tuple(result.follow_up_domains(s.follow_up_domains))
    asked = {p.text for p in first}
    fresh = [p for p in load_probe_library(only=domains) if p.text not in asked] if domains else []
    return result, fresh


def run(ctx: AuditContext, s: ConcernSettings) -> StepOutput:
    result, fresh = screen(ctx.cache, ctx.pair, s)
    if fresh:
        sampled = s.temperature > 0
        result = concern.with_follow_up(
            result, _answers(ctx.cache, ctx.pair, s, fresh, sampled), [p.text for p in fresh],
            [p.domain for p in fresh], samples=s.samples if sampled else 1,
            temperature=s.temperature,
        )  # fmt: skip
    result.save(ctx.artifacts)
    data = {
        "z": result.z,
        "drivers": [m.name for m in result.drivers()],
        "candidates": [h.model_dump(mode="json") for h in concern.hypotheses(result)],
    }
    return StepOutput.of(concern.evidence(result, ctx.where), data)


STEP = Step("concern", settings, run, order=24)
