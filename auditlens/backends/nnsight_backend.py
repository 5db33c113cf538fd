"""The nnsight backend: reads every requested site inside one local ``trace``."""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from auditlens.backends.base import Readout
from auditlens.models import ModelSide
from auditlens.sites import ArchSpec, Site, resolve_module

__all__ = ["NNsightBackend"]


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, tuple) else value


class NNsightBackend:
    """Reads every requested site in forward order within a single nnsight trace."""

    name = "nnsight"

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
        with side.active(), torch.no_grad():
            acts, out = _trace(side.lm, arch, input_ids, attention_mask, sorted(sites), logits)
        return Readout(acts=acts, logits=out)


def _trace(
    lm: Any,
    arch: ArchSpec,
    input_ids: Tensor,
    attention_mask: Tensor,
    sites: list[Site],
    want_logits: bool,
) -> tuple[dict[str, Tensor], Tensor | None]:
    # nnsight needs sites requested in execution order; the trace body lives in a function
    # because traces in module-level loops lose their variables.
    saved: dict[str, Any] = {}
    logits: Any = None
    with lm.trace({"input_ids": input_ids, "attention_mask": attention_mask}):
        for site in sites:
            envoy, which = resolve_module(lm, arch, site)
            value = envoy.input if which == "input" else envoy.output
            saved[site.name] = _first(value).save()
        if want_logits:
            logits = lm.output.logits.save()
    acts = {name: _first(v).detach() for name, v in saved.items()}
    return acts, (logits.detach() if want_logits else None)
