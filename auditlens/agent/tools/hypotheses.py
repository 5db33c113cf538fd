"""The discovery tools: ``list_hypotheses`` (the audit's ranked hypotheses) and
``test_hypothesis`` (a behaviour check of any keywords on held-out probe prompts).

Both run the audit's own code: ``list_hypotheses`` runs the layers, diffing and discovery
steps with this toolkit's budget, prompts and artifact cache (so the answers to the probe
library, the ADL and the crosscoder are the audit's), and ``test_hypothesis`` calls the same
checks the audit's discovery step calls (:mod:`auditlens.behaviour.checks`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from auditlens.agent.tools._base import ToolInputError, ToolkitBase, ToolSpec, finite
from auditlens.audit import artifacts
from auditlens.audit.contract import AuditContext, StepOutput
from auditlens.audit.hypotheses import held_out
from auditlens.audit.pipeline import run_step
from auditlens.audit.steps import concern as concern_step
from auditlens.audit.steps import diffing, discovery, layers
from auditlens.behaviour import checks, concern
from auditlens.probe_library import ProbePrompt, domains, load_probe_library

__all__ = ["SPECS", "HypothesisTools"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListHypothesesInput(_Model):
    limit: int = Field(5, ge=1, le=10, description="Hypotheses to return, strongest first.")


class HypothesisBrief(_Model):
    rank: int
    label: str
    keywords: list[str]
    kind: str
    source: str
    domain: str | None
    strength: float | None
    null: str | None
    evidence: list[str]
    check: str | None = Field(description="The behaviour check that tested it, if any.")
    check_result: str | None
    check_summary: str | None


class ListHypothesesOutput(_Model):
    hypotheses: list[HypothesisBrief]
    n_candidates: int
    covered: str
    notices: list[str]


class TestHypothesisInput(_Model):
    keywords: list[str] = Field(
        default_factory=list, max_length=12, description="Words the behaviour would show."
    )
    domain: str | None = Field(
        None, description="Probe-library domain to test on (e.g. code, advice-money); "
        "None: every domain in turn.",
    )  # fmt: skip
    test: Literal["mention", "code_security", "shorter", "longer", "concern", "trigger"] = Field(
        "mention", description="mention: answers naming the keywords (by stem); "
        "code_security: Bandit MEDIUM/HIGH where both answers parse; shorter/longer: length; "
        "concern: answers carrying any marker of harm (credential or personal-data requests, "
        "a name pushed across answers, anti-oversight, reckless advice, reflex agreement, "
        "manipulation, AI supremacy, incitement); trigger: the prompts with and without "
        "`trigger` in front: what it switches on (the marker of harm or answer feature the "
        "triggered answers gain beyond the base's, corrected for the 26 it is chosen from).",
    )  # fmt: skip
    trigger: str | None = Field(
        None, min_length=1, max_length=80, description="The candidate trigger (test=trigger)."
    )
    n_prompts: int = Field(8, ge=2, le=32, description="Held-out prompts to test on.")


class TestHypothesisOutput(_Model):
    test: str
    outcome: str
    finetuned_rate: float | None
    base_rate: float | None
    n_prompts: int
    z: float
    p_value: float | None
    summary: str
    null: str
    examples: list[str] = Field(description="A few fine-tuned answers that show it.")


class HypothesisTools(ToolkitBase):
    """``list_hypotheses``, ``test_hypothesis``."""

    def _discovery(self) -> StepOutput:
        key = ("discovery",)
        if key not in self._memo:
            out = self.workspace.resolve(Path("discovery"))
            ctx = AuditContext(self.pair, out, self.budget, self.prompts, progress=False,
                               cache=self.cache)  # fmt: skip
            with self._lock:
                for step in (layers, diffing, concern_step, discovery):
                    run_step(step.STEP, ctx)
            self._memo[key] = ctx.outputs["discovery"]
        found: StepOutput = self._memo[key]
        return found

    def list_hypotheses(self, args: ListHypothesesInput) -> ListHypothesesOutput:
        """The audit's ranked hypotheses about what the fine-tune instilled."""
        found = self._discovery()
        hyps = found.hypotheses[: args.limit]
        briefs = [
            HypothesisBrief(
                rank=h.rank, label=h.label, keywords=h.keywords, kind=h.kind, source=h.source,
                domain=h.domain, strength=finite(h.strength), null=h.null, evidence=h.evidence,
                check=h.confirmation.test if h.confirmation else None,
                check_result=h.confirmation.result if h.confirmation else None,
                check_summary=h.confirmation.summary if h.confirmation else None,
            )
            for h in hyps
        ]  # fmt: skip
        total = len(found.hypotheses)
        return ListHypothesesOutput(
            hypotheses=briefs, n_candidates=len(found.data.get("candidates", [])),
            covered=f"ranks 1-{len(briefs)} of {total}", notices=list(found.notices),
        )  # fmt: skip

    def test_hypothesis(self, args: TestHypothesisInput) -> TestHypothesisOutput:
        """Test keywords (or a code-security / length habit) on held-out probe prompts."""
        if args.domain is not None and args.domain not in domains():
            raise ToolInputError(f"unknown domain {args.domain!r}; choose {', '.join(domains())}")
        if args.test == "mention" and not [k for k in args.keywords if k.strip()]:
            raise ToolInputError("a mention test needs keywords")
        if (args.test == "trigger") != (args.trigger is not None):
            raise ToolInputError("a trigger test needs a trigger; no other test takes one")
        used = load_probe_library(self.budget.probe_per_domain)
        domain = "code" if args.test == "code_security" and args.domain is None else args.domain
        prompts = held_out(load_probe_library(), used, domain, args.n_prompts)
        if len(prompts) < 2:
            raise ToolInputError(f"domain {domain!r} has fewer than 2 held-out prompts")

        def generate(probes: list[ProbePrompt]) -> dict[str, list[str]]:
            gens, _ = artifacts.probe_generations(
                self.cache, self.pair, probes, max_new_tokens=self.budget.probe_new_tokens,
                batch_size=self.budget.batch_size,
            )  # fmt: skip
            return gens

        answers = generate(prompts)
        if args.trigger is not None:  # what the trigger switches on, on the triggered answers
            primed = generate([ProbePrompt(p.domain, f"{args.trigger} {p.text}") for p in prompts])
            r = checks.trigger_behaviour(answers, primed, id="tool", trigger=args.trigger)
            answers = primed
        elif args.test == "concern":  # any marker of harm, per prompt
            found = concern.run(answers, [p.text for p in prompts])
            flags = {side: found.any(side) for side in ("finetuned", "base")}
            r = checks.CheckResult("concern", "tool", "answers with a concern marker", flags,
                                   [True] * found.n)  # fmt: skip
        elif args.test == "mention":
            r = checks.mention(answers, [k for k in args.keywords if k.strip()], id="tool")
        elif args.test == "code_security":
            r = checks.code_security(answers, id="tool")
        else:
            r = checks.length(answers, shorter=args.test == "shorter", id="tool")
        c = r.confirmation()
        null = "the base model's answers to the same prompts (McNemar)"
        if r.choices > 1:
            null = (f"the base model's answers with and without the trigger (McNemar), the "
                    f"largest of {r.choices} behaviours, Bonferroni")  # fmt: skip
        shown = [a for a, f in zip(answers["finetuned"], r.flags["finetuned"], strict=True) if f]
        return TestHypothesisOutput(
            test=r.test, outcome=r.outcome, finetuned_rate=finite(r.rate("finetuned")),
            base_rate=finite(r.rate("base")), n_prompts=r.n, z=r.z, p_value=c.p_value,
            summary=r.summary(), null=null,
            examples=[a[:300] for a in shown[:3]],
        )  # fmt: skip


SPECS = (
    ToolSpec(
        "list_hypotheses", ListHypothesesInput, ListHypothesesOutput, "list_hypotheses",
        "Ranked hypotheses of what the fine-tune instilled (white-box evidence, each with its "
        "strength against its instrument's null and the behaviour check that tested it).",
    ),
    ToolSpec(
        "test_hypothesis", TestHypothesisInput, TestHypothesisOutput, "test_hypothesis",
        "Test a hypothesis against the base model on held-out probe prompts: mention rate of "
        "keywords, code security (Bandit MEDIUM/HIGH, both parse), answer length, or markers "
        "of harm (concern).",
    ),
)  # fmt: skip
