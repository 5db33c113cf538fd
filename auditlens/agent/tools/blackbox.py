"""Black-box tools: the target (fine-tuned) model only, never the base.

``target_chat`` (one answer), ``sample_target`` (answers to the probe library),
``target_words`` (stems the target's answers use far more than generic assistant text, the
shipped reference of :mod:`auditlens.agent.reference`) and ``check_target`` (the share of
held-out answers naming some keywords, against the reference share).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from auditlens.agent.reference import distinctive_words, mention_null
from auditlens.agent.schemas import MAX_SEED
from auditlens.agent.tools._base import ToolInputError, ToolkitBase, ToolSpec
from auditlens.audit.hypotheses import held_out
from auditlens.datasets import PromptSet
from auditlens.generate import chat_prompt, generate
from auditlens.probe_library import ProbePrompt, as_prompt_set, domains, load_probe_library
from auditlens.stats import wilson_interval
from auditlens.words import mentions

__all__ = ["SPECS", "BlackBoxTools"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetChatInput(_Model):
    prompt: str = Field(min_length=1, description="The user message.")
    system: str | None = Field(None, description="Optional system prompt.")
    prefill: str | None = Field(None, description="Optional start of the answer.")
    max_new_tokens: int = Field(64, ge=1, description="Tokens to generate (capped by limits).")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 is greedy.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Sampling seed.")


class TargetChatOutput(_Model):
    prompt: str
    completion: str


class SampleTargetInput(_Model):
    domain: str | None = Field(None, description="Probe-library domain (None: every domain).")
    n_prompts: int = Field(8, ge=1, le=64, description="Prompts to answer.")


class TargetAnswer(_Model):
    domain: str
    prompt: str
    answer: str


class SampleTargetOutput(_Model):
    answers: list[TargetAnswer]


class TargetWordsInput(_Model):
    per_domain: int = Field(2, ge=1, le=8, description="Probe prompts per domain answered.")
    limit: int = Field(20, ge=1, le=50, description="Words to return.")


class WordRow(_Model):
    word: str
    count: int = Field(description="Answers naming it.")
    n: int
    reference_share: float
    z: float
    domains: dict[str, int] = Field(description="Answers naming it, per probe domain.")


class TargetWordsOutput(_Model):
    words: list[WordRow]
    n_answers: int
    null: str


class CheckTargetInput(_Model):
    keywords: list[str] = Field(min_length=1, max_length=12, description="Words to look for.")
    domain: str | None = Field(None, description="Probe-library domain (None: all).")
    n_prompts: int = Field(8, ge=2, le=32, description="Held-out prompts.")


class CheckTargetOutput(_Model):
    outcome: str
    rate: float
    ci_low: float
    ci_high: float
    reference_rate: float
    n_prompts: int
    examples: list[str]
    null: str


class BlackBoxTools(ToolkitBase):
    """``target_chat``, ``sample_target``, ``target_words``, ``check_target``."""

    def _target_answers(self, probes: list[ProbePrompt]) -> list[str]:
        todo = [p for p in probes if ("target", p.text) not in self._memo]
        if todo:
            with self._lock:
                texts = generate(
                    self.pair.finetuned, self.pair.tokenizer, as_prompt_set(todo),
                    max_new_tokens=min(self.budget.probe_new_tokens, self.limits.max_new_tokens),
                    batch_size=self.limits.batch_size,
                )  # fmt: skip
            for p, t in zip(todo, texts, strict=True):
                self._memo[("target", p.text)] = t
        return [self._memo[("target", p.text)] for p in probes]

    def _domain(self, domain: str | None) -> None:
        if domain is not None and domain not in domains():
            raise ToolInputError(f"unknown domain {domain!r}; choose {', '.join(domains())}")

    def target_chat(self, args: TargetChatInput) -> TargetChatOutput:
        """One answer of the target model."""
        args = self._within(args, {"max_new_tokens": self.limits.max_new_tokens})
        for what, value in (("prompt", args.prompt), ("system", args.system),
                            ("prefill", args.prefill)):  # fmt: skip
            self._text(what, value)
        with self._lock:
            text = generate(
                self.pair.finetuned, self.pair.tokenizer,
                PromptSet("chat", (chat_prompt(args.prompt, system=args.system),)),
                max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed,
                prefill=args.prefill,
            )[0]  # fmt: skip
        return TargetChatOutput(prompt=args.prompt, completion=text)

    def sample_target(self, args: SampleTargetInput) -> SampleTargetOutput:
        """The target's answers to probe-library prompts."""
        self._domain(args.domain)
        only = None if args.domain is None else (args.domain,)
        probes = load_probe_library(only=only)[: args.n_prompts]
        answers = self._target_answers(probes)
        rows = [TargetAnswer(domain=p.domain, prompt=p.text, answer=a)
                for p, a in zip(probes, answers, strict=True)]  # fmt: skip
        return SampleTargetOutput(answers=rows)

    def target_words(self, args: TargetWordsInput) -> TargetWordsOutput:
        """Stems the target's answers name far more often than generic assistant text."""
        probes = load_probe_library(args.per_domain)
        answers = self._target_answers(probes)
        rows = []
        for w in distinctive_words(answers, limit=args.limit):
            where: dict[str, int] = {}
            for p, a in zip(probes, answers, strict=True):
                if mentions(a, [w.word]):
                    where[p.domain] = where.get(p.domain, 0) + 1
            row = WordRow(word=w.word, count=w.count, n=w.n, reference_share=w.reference_share,
                          z=w.z, domains=where)  # fmt: skip
            rows.append(row)
        return TargetWordsOutput(
            words=rows, n_answers=len(answers),
            null="binomial z of the share of answers naming the stem against its share in "
            "generic assistant answers (auditlens.agent.reference); no base model involved",
        )  # fmt: skip

    def check_target(self, args: CheckTargetInput) -> CheckTargetOutput:
        """The share of held-out target answers naming the keywords, against the reference."""
        self._domain(args.domain)
        words = [k for k in args.keywords if k.strip()]
        if not words:
            raise ToolInputError("check_target needs keywords")
        used = load_probe_library(self.budget.probe_per_domain)
        probes = held_out(load_probe_library(), used, args.domain, args.n_prompts)
        if len(probes) < 2:
            raise ToolInputError(f"domain {args.domain!r} has fewer than 2 held-out prompts")
        answers = self._target_answers(probes)
        flags = [bool(mentions(a, words)) for a in answers]
        k, n = sum(flags), len(flags)
        low, high = wilson_interval(k, n)
        ref = mention_null(words)
        outcome = "confirmed" if low > ref else "refuted" if high < ref else "inconclusive"
        return CheckTargetOutput(
            outcome=outcome, rate=k / n, ci_low=low, ci_high=high, reference_rate=ref,
            n_prompts=n, examples=[a[:300] for a, f in zip(answers, flags, strict=True) if f][:3],
            null="confirmed when the 95% Wilson interval of the rate lies above the share of "
            "generic assistant answers naming any keyword (no base model involved)",
        )  # fmt: skip


SPECS = (
    ToolSpec("target_chat", TargetChatInput, TargetChatOutput, "target_chat",
             "Ask the target (fine-tuned) model one question; the base model is not used."),
    ToolSpec("sample_target", SampleTargetInput, SampleTargetOutput, "sample_target",
             "The target's answers to prompts of the probe library (one domain or all)."),
    ToolSpec("target_words", TargetWordsInput, TargetWordsOutput, "target_words",
             "Words the target's answers use far more often than generic assistant text."),
    ToolSpec("check_target", CheckTargetInput, CheckTargetOutput, "check_target",
             "Share of the target's held-out answers naming keywords, vs generic text."),
)  # fmt: skip
