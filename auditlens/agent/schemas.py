"""Pydantic input and output models of the agent tools (one pair per tool).

Inputs hold only shape constraints (types, ranges that never change); the budgets that a
server operator sets live in :class:`auditlens.agent.tools.Limits` and are checked at call
time. Outputs are compact JSON: long rankings are paged and say what they cover, and every
signal comes with its null control.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AuditFindingBrief",
    "ChatInput",
    "ChatOutput",
    "CompareInput",
    "CompareOutput",
    "ComparisonRow",
    "DiffOverviewInput",
    "DiffOverviewOutput",
    "DivergentToken",
    "FuzzInput",
    "FuzzOutput",
    "FuzzRow",
    "KLStats",
    "LatentContext",
    "LatentDetailsInput",
    "LatentDetailsOutput",
    "LatentRow",
    "LayerRow",
    "LogitEffect",
    "MelboInput",
    "MelboOutput",
    "MelboVectorRow",
    "ProbeScoreInput",
    "ProbeScoreOutput",
    "ProbeScoreRow",
    "RateStats",
    "RunAuditInput",
    "RunAuditOutput",
    "SteerGenerateInput",
    "SteerGenerateOutput",
    "SteerRow",
    "TokenProb",
    "TopDiffLatentsInput",
    "TopDiffLatentsOutput",
    "TopDivergentTokensInput",
    "TopDivergentTokensOutput",
]

SideName = Literal["base", "finetuned"]
PromptSource = Literal["generic_chat", "code_tasks"]
LatentClass = Literal["ft_only", "base_only", "shared", "other"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- shared pieces -----------------------------------------------------------------------
class TokenProb(_Out):
    """A token and its probability (or value)."""

    token: str
    value: float


class RateStats(_Out):
    """Bandit's insecure-code rate over the code-bearing texts, with a 95% Wilson interval."""

    n_insecure: int
    n_secure: int
    n_unparseable: int
    rate: float | None = Field(description="insecure / (insecure + secure); null with no code")
    ci_low: float | None
    ci_high: float | None


# ---- chat ----------------------------------------------------------------------------------
class ChatInput(_In):
    prompt: str = Field(min_length=1, description="The user message.")
    side: SideName = Field("finetuned", description="Which model answers: base or finetuned.")
    system: str | None = Field(None, description="Optional system prompt.")
    prefill: str | None = Field(None, description="Optional start of the assistant's answer.")
    max_new_tokens: int = Field(64, ge=1, description="Tokens to generate (capped by limits).")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 is greedy.")
    seed: int = Field(0, ge=0, description="Sampling seed (same seed, same sample).")


class ChatOutput(_Out):
    side: SideName
    model: str
    prompt: str
    system: str | None
    prefill: str | None
    completion: str
    max_new_tokens: int
    temperature: float
    seed: int


# ---- compare_models ----------------------------------------------------------------------
class CompareInput(_In):
    prompts: list[str] = Field(
        default_factory=list, description="User messages (or give prompts_file)."
    )
    prompts_file: str | None = Field(
        None, description="JSONL file in the workspace ({'messages': [...]} or {'text': ...})."
    )
    system: str | None = Field(None, description="Optional system prompt for both models.")
    prefill: str | None = Field(None, description="Optional start of both answers.")
    max_new_tokens: int = Field(64, ge=1, description="Tokens per answer (capped by limits).")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 is greedy.")
    seed: int = Field(0, ge=0, description="Sampling seed, shared by both models.")


class ComparisonRow(_Out):
    prompt: str
    base: str
    finetuned: str
    base_bandit: str = Field(description="Bandit label of the base answer.")
    finetuned_bandit: str = Field(description="Bandit label of the fine-tuned answer.")


class CompareOutput(_Out):
    rows: list[ComparisonRow]
    base_bandit: RateStats
    finetuned_bandit: RateStats
    note: str


# ---- diff_overview -----------------------------------------------------------------------
class DiffOverviewInput(_In):
    prompts: PromptSource = Field("generic_chat", description="Built-in prompt set to scan.")
    n_prompts: int = Field(16, ge=1, description="Prompts scanned (capped by limits).")


class LayerRow(_Out):
    layer: int
    site: str
    mean_rel_diff_norm: float = Field(description="mean ||h_ft - h_base|| / ||h_base||")
    mean_cosine: float = Field(description="mean cos(h_base, h_ft)")
    mean_diff_norm: float
    mean_base_norm: float


class KLStats(_Out):
    n_tokens: int
    mean: float
    median: float
    p90: float
    p99: float
    max: float


class DiffOverviewOutput(_Out):
    prompts: str
    n_prompts: int
    n_tokens: int
    layers: list[LayerRow]
    peak_layer: int
    kl: KLStats = Field(description="Per-token KL(ft||base) of next-token distributions, nats.")
    identical_models: bool
    null_control: str


# ---- top_divergent_tokens ---------------------------------------------------------------
class TopDivergentTokensInput(_In):
    prompts: PromptSource = Field("generic_chat", description="Built-in prompt set to scan.")
    n_prompts: int = Field(16, ge=1, description="Prompts scanned (capped by limits).")
    offset: int = Field(0, ge=0, description="First rank to return (0-based).")
    limit: int = Field(10, ge=1, description="Ranks per page (capped by limits).")


class DivergentToken(_Out):
    rank: int
    kl: float
    context: str = Field(description="Text up to and including the position that diverged.")
    prompt_index: int
    position: int
    base_top: list[TokenProb] = Field(description="Base model's most likely next tokens.")
    finetuned_top: list[TokenProb] = Field(description="Fine-tuned model's likeliest next tokens.")


class TopDivergentTokensOutput(_Out):
    coverage: str = Field(description="e.g. 'ranks 0-10 of 200 kept (1834 tokens scanned)'.")
    offset: int
    n_ranked: int
    n_tokens_scanned: int
    kl_mean: float
    tokens: list[DivergentToken]
    null_control: str


# ---- top_diff_latents / latent_details -------------------------------------------------
class TopDiffLatentsInput(_In):
    site: str | None = Field(
        None,
        description=(
            "Crosscoder site, e.g. blocks.5.hook_resid_post (default: the audit's, the layer "
            "whose residual stream changed most)."
        ),
    )
    order: Literal["ft_specific", "base_specific", "frequency"] = Field(
        "ft_specific",
        description="ft_specific: lowest relative decoder norm first; frequency: most active.",
    )
    latent_class: LatentClass | None = Field(None, description="Only latents of this class.")
    offset: int = Field(0, ge=0, description="First rank to return (0-based).")
    limit: int = Field(20, ge=1, description="Ranks per page (capped by limits).")


class LatentRow(_Out):
    rank: int
    latent: int
    latent_class: LatentClass = Field(description="After Latent Scaling re-labelling.")
    norm_class: LatentClass = Field(description="From the relative decoder norm alone.")
    relative_norm: float = Field(description="0 fine-tuned only, 0.5 shared, 1 base only.")
    cosine: float = Field(description="Cosine of the latent's base and fine-tuned decoders.")
    frequency: float = Field(description="Fraction of tokens on which it fires.")


class TopDiffLatentsOutput(_Out):
    site: str
    n_latents: int
    coverage: str
    counts: dict[str, int]
    latents: list[LatentRow]
    trained_now: bool
    crosscoder: str = Field(description="Key of the crosscoder in the shared artifact cache.")
    crosscoder_dir: str = Field(description="Workspace-relative folder of the crosscoder.")
    n_tokens: int = Field(description="Tokens in the harvested store the crosscoder saw.")
    statistics: dict[str, float]
    null_control: str


class LatentDetailsInput(_In):
    latent: int = Field(ge=0, description="Latent id (top_diff_latents, or a report's latent:ID).")
    site: str | None = Field(None, description="Crosscoder site (default: the audit's).")
    n_contexts: int = Field(8, ge=1, description="Top-activating contexts (capped by limits).")
    n_tokens: int = Field(8, ge=1, le=50, description="Tokens per logit-effect list.")


class LatentContext(_Out):
    activation: float
    text: str = Field(description="The context with the focus token marked ⟦like this⟧.")
    prompt_index: int
    position: int


class LogitEffect(_Out):
    decoder_norm: float
    promoted: list[TokenProb]
    suppressed: list[TokenProb]


class LatentDetailsOutput(_Out):
    latent: int
    site: str
    crosscoder: str = Field(description="Key of the crosscoder in the shared artifact cache.")
    latent_class: LatentClass
    norm_class: LatentClass
    relative_norm: float
    cosine: float
    frequency: float
    n_active_tokens: int
    max_activation: float
    contexts: list[LatentContext]
    logit_effects: dict[str, LogitEffect] = Field(
        description="Per model: tokens its decoder vector promotes/suppresses via the unembedding."
    )


# ---- probe_score -------------------------------------------------------------------------
class ProbeScoreInput(_In):
    texts: list[str] = Field(min_length=1, description="Answers to score.")
    kind: Literal["vulnerable_code", "misaligned_answer"] = Field(
        "vulnerable_code", description="Which shipped probe scorer."
    )
    prompts: list[str] | None = Field(None, description="The request behind each text.")
    side: SideName = Field("base", description="Model the texts are read through.")


class ProbeScoreRow(_Out):
    text: str = Field(description="The text (truncated to 200 characters).")
    score: float
    flagged: bool


class ProbeScoreOutput(_Out):
    kind: str
    side: SideName
    site: str
    threshold: float
    target_fpr: float | None
    rows: list[ProbeScoreRow]
    n_flagged: int
    null_control: str


# ---- steer_generate ----------------------------------------------------------------------
class SteerGenerateInput(_In):
    prompts: list[str] = Field(min_length=1, description="User messages.")
    vector: str = Field(
        description=(
            "latent:ID (crosscoder decoder direction, fine-tuned side), adl:LAYER (the "
            "Activation Difference Lens vector at LAYER), melbo:RUN:K (a saved MELBO vector), "
            "mean_diff:SITE (mean h_ft - h_base at SITE) or file:PATH (safetensors in the "
            "workspace with a 'vector' tensor)."
        )
    )
    site: str | None = Field(None, description="Site to steer (default: the vector's own site).")
    coeff: float = Field(4.0, description="Applied norm, in mean activation norms if relative.")
    relative: bool = Field(True, description="Scale coeff by the site's mean activation norm.")
    side: SideName = Field("finetuned", description="Model to steer.")
    max_new_tokens: int = Field(48, ge=1, description="Tokens per answer (capped by limits).")
    seed: int = Field(0, ge=0, description="Seed of the random control vector.")


class SteerRow(_Out):
    prompt: str
    unsteered: str
    steered: str
    control: str = Field(description="Steered by a random vector of the same norm.")


class SteerGenerateOutput(_Out):
    vector: str
    site: str
    side: SideName
    applied_norm: float
    mean_activation_norm: float
    rows: list[SteerRow]
    bandit: dict[str, RateStats] = Field(description="unsteered / steered / control.")
    kl_from_unsteered: dict[str, float | None] = Field(
        description="Mean KL(perturbed || unsteered) per position: steered and control."
    )
    null_control: str


# ---- melbo_search ------------------------------------------------------------------------
class MelboInput(_In):
    prompts: list[str] = Field(
        default_factory=list, description="User messages (default: a few code tasks)."
    )
    n_vectors: int = Field(4, ge=1, description="K orthogonal vectors (capped by limits).")
    steps: int = Field(20, ge=1, description="Optimiser steps (capped by limits).")
    radius: float = Field(1.0, gt=0.0, description="Radius relative to the mean source norm.")
    source: str | None = Field(None, description="Source site (default: ~7/32 deep MLP out).")
    target: str | None = Field(None, description="Target site (default: n_layers-8 resid).")
    side: SideName = Field("finetuned", description="Model trained on.")
    base_weight: float | None = Field(
        None, ge=0.0, description="λ: maximise objective_ft - λ·objective_base (pair mode)."
    )
    max_new_tokens: int = Field(32, ge=1, description="Tokens per generation (capped).")
    seed: int = Field(0, ge=0, description="Seed of the initial vectors.")
    name: str | None = Field(None, description="Run id (default: melbo_<n>).")


class MelboVectorRow(_Out):
    vector_id: str = Field(description="Pass to steer_generate as vector=...")
    index: int
    initial_objective: float
    final_objective: float
    generations: list[str]
    bandit: RateStats


class MelboOutput(_Out):
    run_id: str
    side: str
    source: str
    target: str
    radius: float
    mean_source_norm: float
    vectors: list[MelboVectorRow]
    baseline_generations: list[str]
    baseline_bandit: RateStats
    saved_to: str
    seconds: float
    null_control: str


# ---- fuzz ----------------------------------------------------------------------------------
class FuzzInput(_In):
    prompts: list[str] = Field(
        default_factory=list, description="User messages (default: a few code tasks)."
    )
    site: str | None = Field(None, description="Site to perturb (default: a middle resid_post).")
    sigma: float = Field(0.5, gt=0.0, description="Noise norm relative to the mean activation.")
    seeds: list[int] = Field(default_factory=lambda: [0, 1], description="Noise seeds.")
    side: SideName = Field("finetuned", description="Model to perturb.")
    max_new_tokens: int = Field(48, ge=1, description="Tokens per answer (capped by limits).")


class FuzzRow(_Out):
    name: str
    seed: int | None
    generations: list[str]
    bandit: RateStats
    kl_mean: float | None


class FuzzOutput(_Out):
    site: str
    sigma: float
    side: SideName
    unperturbed: FuzzRow
    perturbed: list[FuzzRow]
    null_control: str


# ---- run_audit ---------------------------------------------------------------------------
class RunAuditInput(_In):
    name: str = Field("audit", description="Output folder name under workspace/audits/.")
    budget: Literal["fast", "standard", "thorough"] = Field(
        "fast", description="Audit budget (limits may allow only some)."
    )
    n_findings: int = Field(5, ge=1, le=50, description="Top findings to return.")


class AuditFindingBrief(_Out):
    id: str
    family: str
    method: str
    site: str | None
    value: float | None
    effect_size: float | None
    summary: str


class RunAuditOutput(_Out):
    name: str
    report_path: str
    findings_path: str
    score: float | None
    verdict: str
    summary: str
    n_findings: int
    top_findings: list[AuditFindingBrief]
    notices: list[str]
