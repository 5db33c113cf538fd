"""The TransformerLens backend: a ``TransformerBridge`` around the same HF module."""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from auditlens.backends.base import Readout
from auditlens.errors import AuditlensError
from auditlens.models import ModelSide
from auditlens.sites import ArchSpec, Site

__all__ = ["TransformerLensBackend"]


class TransformerLensBackend:
    """Reads sites with ``TransformerBridge.run_with_cache``; hook names match ours natively."""

    name = "transformer_lens"

    def __init__(self) -> None:
        self._bridges: dict[int, Any] = {}

    def _bridge(self, side: ModelSide) -> Any:
        key = id(side.hf)
        if key not in self._bridges:
            from transformer_lens.model_bridge import TransformerBridge

            tokenizer = side.lm.tokenizer if side.lm is not None else None
            try:
                self._bridges[key] = TransformerBridge.boot_transformers(
                    side.hf.config._name_or_path or "model",
                    hf_model=side.hf,
                    tokenizer=tokenizer,
                    device=str(next(side.hf.parameters()).device),
                )
            except Exception as err:  # TransformerLens raises many types here
                raise AuditlensError(
                    f"TransformerLens cannot wrap {type(side.hf).__name__}: {err}".splitlines()[0]
                ) from err
        return self._bridges[key]

    def run(
        self,
        side: ModelSide,
        arch: ArchSpec,
        input_ids: Int[Tensor, "batch seq"],
        attention_mask: Int[Tensor, "batch seq"],
        sites: list[Site],
        *,
        logits: bool = False,
    ) -> Readout:
        names = {site.name for site in sites}
        bridge = self._bridge(side)
        with side.active(), torch.no_grad():
            out, cache = bridge.run_with_cache(
                input_ids, attention_mask=attention_mask, names_filter=lambda n: n in names
            )
        acts = {name: cache[name].detach() for name in names}
        return Readout(acts=acts, logits=out.detach() if logits else None)
