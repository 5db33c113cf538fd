"""The audit's diffing step: weight diff, Activation Difference Lens (with its vocabulary
enrichment) and a crosscoder, at the layer the ``layers`` step found most changed.

No finding here contributes to the misalignment score (see
:mod:`auditlens.diffing.enrichment` for the measured testbed numbers)."""

from __future__ import annotations

from typing import Any

from auditlens.datasets import load_prompts
from auditlens.diffing import adl, crosscoder, enrichment, weights
from auditlens.harvest import harvest
from auditlens.pipeline import AuditContext, StepOutput
from auditlens.reports.evidence import Evidence
from auditlens.reports.sections import Text

__all__ = ["run"]

_N_ADL_RANDOM = 8
ENRICHMENT = enrichment.EnrichmentSettings()
"""The vocabularies of the ADL direction's enrichment (tests swap in a stand-in)."""


def _peak_layer(ctx: AuditContext, notices: list[str]) -> int:
    layers = ctx.outputs.get("layers")
    if layers is not None and "peak_layer" in layers.data:
        return int(layers.data["peak_layer"])
    notices.append("diffing: no layers step output; using the middle layer")
    return ctx.pair.n_layers // 2


def run(ctx: AuditContext) -> StepOutput:
    """Weight diff, ADL (with vulnerability-token enrichment) and a crosscoder at the peak."""
    pair, budget = ctx.pair, ctx.budget
    notices: list[str] = []
    layer = _peak_layer(ctx, notices)
    site = f"blocks.{layer}.hook_resid_post"
    art = ctx.artifact_dir("diffing")
    where = "artifacts/diffing"
    prompts = load_prompts(ctx.prompts).head(budget.n_prompts)

    wd = weights.run(pair, progress=ctx.progress)
    wd.save(art / "weight_diff")

    n_held = min(8, len(prompts) // 4)
    config = adl.ADLConfig(
        layers=(layer,), n_held=n_held, causal=n_held > 0, causal_layer=layer,
        n_random=_N_ADL_RANDOM, batch_size=budget.batch_size,
        causal_max_length=min(64, budget.max_length),
    )  # fmt: skip
    lens = adl.run(pair, prompts, config, progress=ctx.progress)
    lens.save(art / "adl")
    lens.steering_vector().save(art / "adl" / "steering_vector")
    enriched = enrichment.run(pair.finetuned, pair.tokenizer, lens.vector(layer), ENRICHMENT)
    enriched.save(art / "adl")

    store = harvest(
        pair, prompts, [site], art / "store", batch_size=budget.batch_size,
        max_length=budget.max_length, overwrite=True, progress=ctx.progress,
    )  # fmt: skip
    settings = crosscoder.CrosscoderSettings(
        n_latents=budget.crosscoder_latents, steps=budget.crosscoder_steps
    )
    cc = crosscoder.run(store, site, settings, pair=pair, progress=ctx.progress)
    cc.save(art / "crosscoder")

    intro = Text(
        title="Model diffing",
        body=(
            f"Weight diff of every matrix; Activation Difference Lens and a crosscoder at {site}, "
            "the layer whose residual stream changed most."
        ),
    )
    ev = Evidence(sections=[intro], notices=notices) + Evidence.combine(
        [
            weights.evidence(wd, f"{where}/weight_diff"),
            adl.evidence(lens, f"{where}/adl"),
            enrichment.evidence(enriched, site, where=f"{where}/adl"),
            crosscoder.evidence(cc, f"{where}/crosscoder"),
        ]
    )
    data: dict[str, Any] = {
        "adl_layer": layer,
        "adl_rel_norm": lens.relative_norms()[lens.layers.index(layer)],
        "adl_enrichment_z": enriched.z_score,
        "crosscoder_site": site,
        "crosscoder_counts": cc.result.analysis.counts(),
    }
    return StepOutput(findings=ev.findings, sections=ev.sections, data=data, notices=ev.notices)
