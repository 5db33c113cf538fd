"""The diffing step: weight diff, Activation Difference Lens (with its vocabulary enrichment)
and a crosscoder, at the layer the ``layers`` step found most changed.

The ADL result and the crosscoder come from the shared artifact cache
(:mod:`auditlens.audit.artifacts`), so the agent tools read the same ones. No finding here
contributes to the misalignment score (see :mod:`auditlens.diffing.enrichment` for why)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from auditlens.audit import artifacts
from auditlens.audit.adl_reference import adl_evidence, shipped_digest
from auditlens.audit.cache import link_tree
from auditlens.audit.contract import AuditContext, Budget, Step, StepOutput
from auditlens.datasets import PromptSet
from auditlens.diffing import adl, adl_specific, crosscoder, enrichment, weights
from auditlens.reports.evidence import Evidence
from auditlens.reports.sections import Text

__all__ = ["STEP", "DiffingSettings", "settings"]


@dataclass(frozen=True)
class DiffingSettings:
    """The methods' settings; the ADL's layer is the ``layers`` step's peak, set at run time."""

    adl: adl.ADLConfig
    specific: adl_specific.SpecificSettings
    adl_reference: str | None
    """Content hash of the shipped ADL reference (None: none ships; the ADL is read raw)."""
    enrichment: enrichment.EnrichmentSettings
    crosscoder: crosscoder.CrosscoderSettings
    batch_size: int
    """Prompts per harvest batch (the crosscoder's store)."""
    max_length: int
    """Tokens per prompt in the harvest."""


def settings(budget: Budget, prompts: PromptSet) -> DiffingSettings:
    """ADL on the first positions with 8 random controls (a quarter of the prompts held out,
    at most 8), and the budget's crosscoder."""
    n_held = min(8, len(prompts) // 4)
    config = adl.ADLConfig(
        n_held=n_held, causal=n_held > 0, n_random=8, batch_size=budget.batch_size,
        causal_max_length=min(64, budget.max_length),
    )  # fmt: skip
    b = budget
    cc = crosscoder.CrosscoderSettings(n_latents=b.crosscoder_latents, steps=b.crosscoder_steps)
    return DiffingSettings(
        config, adl_specific.SpecificSettings(), shipped_digest(),
        enrichment.EnrichmentSettings(), cc, budget.batch_size, budget.max_length,
    )  # fmt: skip


def peak_site(ctx: AuditContext) -> tuple[int, list[str]]:
    """The most-changed layer (from the layers step; the middle layer without it)."""
    layer = ctx.data("layers", "peak_layer")
    if layer is None:
        return ctx.pair.n_layers // 2, ["diffing: no layers step output; using the middle layer"]
    return int(layer), []


def _first_changed(ctx: AuditContext, share: float = 0.25) -> list[int]:
    """The first layer whose relative difference reaches ``share`` of the peak's."""
    rel = ctx.data("layers", "rel_diff") or [0.0]
    return [next(i for i, r in enumerate(rel) if r >= share * max(rel))] if max(rel) > 0 else []


def run(ctx: AuditContext, s: DiffingSettings) -> StepOutput:
    pair, prompts = ctx.pair, ctx.prompt_set()
    layer, notices = peak_site(ctx)
    site = f"blocks.{layer}.hook_resid_post"
    wd = weights.run(pair, progress=ctx.progress)
    wd.save(ctx.artifacts / "weight_diff")
    adl_layers = (*_first_changed(ctx), pair.n_layers // 2, layer)
    config = dataclasses.replace(s.adl, layers=tuple(sorted(set(adl_layers))), causal_layer=layer)
    lens, lens_dir, _ = artifacts.adl_result(
        ctx.cache, pair, prompts, config, progress=ctx.progress
    )
    link_tree(lens_dir, ctx.artifacts / "adl")
    lens_ev, specific = adl_evidence(
        pair, lens, s.specific, s.adl_reference, ctx.artifacts / "adl", f"{ctx.where}/adl"
    )
    enriched = enrichment.run(pair.finetuned, pair.tokenizer, lens.vector(layer), s.enrichment)
    enriched.save(ctx.artifacts / "adl")
    cc, cc_dir, _ = artifacts.crosscoder_diff(
        ctx.cache, pair, prompts, site, s.crosscoder, batch_size=s.batch_size,
        max_length=s.max_length, progress=ctx.progress,
    )  # fmt: skip
    link_tree(cc_dir, ctx.artifacts / "crosscoder")
    body = f"Weight diff of every matrix; Activation Difference Lens and a crosscoder at {site}, "
    intro = Text(title="Model diffing", body=body + "the layer whose residual stream changed most.")
    ev = Evidence(sections=[intro], notices=notices) + Evidence.combine(
        [
            weights.evidence(wd, f"{ctx.where}/weight_diff"),
            lens_ev,
            enrichment.evidence(enriched, site, where=f"{ctx.where}/adl"),
            crosscoder.evidence(cc, f"{ctx.where}/crosscoder"),
        ]
    )
    data = {
        "adl_specific": specific,
        "candidates": [h.model_dump(mode="json") for h in ev.hypotheses],
        "adl_layer": layer,
        "adl_rel_norm": lens.relative_norms()[lens.layers.index(layer)],
        "adl_enrichment_z": enriched.z_score,
        "crosscoder_site": site,
        "crosscoder_key": cc_dir.name,
        "crosscoder_counts": cc.result.analysis.counts(),
    }
    ev.hypotheses = []  # candidates: the discovery step merges and ranks them
    return StepOutput.of(ev, data)


STEP = Step("diffing", settings, run, needs=("layers",), uses_prompts=True, order=20)
