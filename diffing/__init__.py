"""auditlens.diffing: where and how fine-tuning changed a model (activations, logits, weights).

Each method is a module with one face, ``run(inputs, settings) -> result`` and
``evidence(result) -> Evidence`` (findings beside their null controls, report sections)::

    from auditlens.diffing import adl, crosscoder, enrichment, scan, weights
    result = adl.run(pair, "generic_chat", adl.ADLConfig(layers=(15,)))
    ev = adl.evidence(result)

``scan`` (per-layer activation differences and per-token KL), ``weights`` (weight diff),
``adl`` (Activation Difference Lens with its steering check), ``adl_specific`` (the ADL read
with the benign fine-tunes' δ projected out), ``patchscope`` (a vector read through a
token-identity prompt), ``enrichment`` (vocabulary
enrichment of a direction's logit lens), ``crosscoder`` and ``diff_sae`` (sparse dictionaries
of the change), ``divergent`` (words the fine-tune prefers in its own answers to the probe
library, against the same statistic on the base's answers). ``interpret_latents`` reads any
dictionary's latents; ``null_control`` reruns
a method on base vs base.
"""

from auditlens.diffing import (
    adl,
    adl_specific,
    crosscoder,
    diff_sae,
    divergent,
    enrichment,
    patchscope,
    scan,
    weights,
)
from auditlens.diffing.controls import base_vs_base, null_control
from auditlens.diffing.latents import interpret_latents

__all__ = [
    "adl",
    "adl_specific",
    "base_vs_base",
    "crosscoder",
    "diff_sae",
    "divergent",
    "enrichment",
    "interpret_latents",
    "null_control",
    "patchscope",
    "scan",
    "weights",
]
