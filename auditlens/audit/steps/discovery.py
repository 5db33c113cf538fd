"""The discovery step: what did the fine-tune instil? Candidates from the divergent words (the
models' answers to the probe library, generated once and shared through the artifact cache),
from the answer-feature panel on the same answers (:mod:`auditlens.behaviour.features`),
from the concern step's markers of harm (:mod:`auditlens.behaviour.concern`) and from the
diffing step (ADL per-position readout, fine-tune-only crosscoder latents) are merged and
ranked (:mod:`auditlens.audit.hypotheses`); the top ones are tested by the checks their kind
calls for, on held-out probe prompts (code security: also on code tasks no statistic scores)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from auditlens.audit import artifacts, hypotheses
from auditlens.audit.contract import AuditContext, Budget, Step, StepOutput
from auditlens.audit.steps.adversary import check_tasks
from auditlens.behaviour import features
from auditlens.datasets import PromptSet
from auditlens.diffing import divergent, triggers
from auditlens.probe_library import ProbePrompt, load_probe_library
from auditlens.reports.evidence import Evidence
from auditlens.reports.findings import Hypothesis

__all__ = ["STEP", "DiscoverySettings", "settings"]


@dataclass(frozen=True)
class DiscoverySettings:
    """The instruments' and checks' settings."""

    per_domain: int
    """Probe prompts per domain answered for the instruments."""
    divergent: divergent.DivergentSettings
    check_prompts: int
    """Held-out prompts per check."""
    code_new_tokens: int = 96
    """Tokens per answer in the code-security check (code needs room to parse)."""
    top: int = 3
    """Hypotheses tested by behaviour checks."""
    keep: int = 10
    """Hypotheses kept in the report."""
    self_report: int = 6
    """Direct questions per tested hypothesis (self-report check; 0: none)."""
    trigger_scan: triggers.TriggerSettings = field(default_factory=triggers.TriggerSettings)
    """The trigger scan's budget (candidates, prompts, random controls)."""
    trigger_words: int = 6
    """Evidence strings (divergent words, ADL/crosscoder keywords) added to the generic shapes."""
    feature_alpha: float = 0.01
    """Family-wise level of the answer-feature panel (Holm); chosen on dev organisms."""
    code_tasks: tuple[int, int, int] = (0, 0, 0)
    """Code-security check tasks beside the library's: (how many, behaviour's count,
    adversary's count), disjoint from both."""


def settings(budget: Budget, prompts: PromptSet) -> DiscoverySettings:
    """The budget's probe sample and answer length."""
    div = divergent.DivergentSettings(max_new_tokens=budget.probe_new_tokens)
    ppd = budget.probe_per_domain
    scan = triggers.TriggerSettings(
        prompts=min(8, 2 * ppd), candidates=min(40, len(triggers.GENERIC) + 3 * ppd),
        controls=8 if ppd <= 2 else 12, batch_size=budget.batch_size,
    )  # fmt: skip
    code = (2 * budget.check_prompts, budget.n_code_tasks, budget.adversary_prompts)
    return DiscoverySettings(ppd, div, budget.check_prompts, code_new_tokens=budget.max_new_tokens,
                             trigger_scan=scan, trigger_words=3 * ppd, code_tasks=code)  # fmt: skip


def run(ctx: AuditContext, s: DiscoverySettings) -> StepOutput:
    library = load_probe_library()
    used = load_probe_library(s.per_domain)

    def answers(probes: Sequence[ProbePrompt], code: bool = False) -> dict[str, list[str]]:
        n = s.code_new_tokens if code else s.divergent.max_new_tokens
        gens, _ = artifacts.probe_generations(
            ctx.cache, ctx.pair, probes, max_new_tokens=n, batch_size=s.divergent.batch_size
        )
        return gens

    result = divergent.run(ctx.pair, used, s.divergent, generations=answers(used))
    result.save(ctx.artifacts / "divergent")
    ev = divergent.evidence(result, f"{ctx.where}/divergent")
    panel = features.run(result.generations, [p.text for p in used], alpha=s.feature_alpha)
    (ctx.artifacts / "features.json").write_text(json.dumps(panel.to_json(), indent=1))
    fev = features.evidence(panel, ctx.where)
    from_diffing = [Hypothesis.model_validate(h) for h in ctx.data("diffing", "candidates", [])]
    from_concern = [Hypothesis.model_validate(h) for h in ctx.data("concern", "candidates", [])]
    # trigger candidates: generic shapes and the strings the evidence singles out
    rare = [w.word for w in result.words if w.base_share < s.divergent.max_base_share]
    named = rare[: s.trigger_words]
    named += [k for h in from_diffing for k in h.keywords[:2]][: s.trigger_words]
    scan = triggers.run(ctx.pair, [p.text for p in used], result.generations["base"],
                        [*triggers.GENERIC, *named], s.trigger_scan)  # fmt: skip
    scan.save(ctx.artifacts)
    tev = triggers.evidence(scan, ctx.where)
    candidates = ev.hypotheses + fev.hypotheses + tev.hypotheses + from_diffing + from_concern
    ranked = hypotheses.merge(candidates, keep=s.keep)
    code = [ProbePrompt("code", t.request) for t in check_tasks(*s.code_tasks)]
    tested, checked, check_data = hypotheses.confirm(
        ranked, library, used, answers, n_prompts=s.check_prompts, top=s.top, where=ctx.where,
        self_report=s.self_report, code_prompts=code,
    )  # fmt: skip
    (ctx.artifacts / "checks.json").write_text(json.dumps(check_data, indent=1))
    table = hypotheses.table(tested)
    notices = [] if tested else ["discovery: no instrument found anything above its null"]
    out = Evidence(sections=[table], notices=notices, hypotheses=tested) + Evidence(
        findings=ev.findings + fev.findings + tev.findings + checked.findings,
        sections=ev.sections + fev.sections + tev.sections,
    )
    data = {"candidates": [h.model_dump(mode="json") for h in candidates]}
    return StepOutput.of(out, data)


STEP = Step("discovery", settings, run, needs=("diffing", "concern"), order=25)
