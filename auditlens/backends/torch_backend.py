"""The plain torch backend: forward hooks from :mod:`auditlens.hooks`, no wrapper library.

Without logits it stops the forward pass after the deepest requested site, so reading early
layers costs only those layers.
"""

from __future__ import annotations

from functools import partial

import torch
from jaxtyping import Int
from torch import Tensor

from auditlens.backends.base import Readout
from auditlens.hooks import EditFn, attach_edit, hooks_removed, read_sites
from auditlens.models import ModelSide
from auditlens.sites import ArchSpec, Site

__all__ = ["TorchBackend"]


class TorchBackend:
    """Reads sites with plain forward hooks on the HF module."""

    name = "torch"

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
        root = side.hf
        forward = partial(root, input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        with side.active(), torch.no_grad():
            if not logits:
                return Readout(read_sites(root, arch, sites, forward), None)
            acts: dict[str, Tensor] = {}

            def keeper(site: Site) -> EditFn:
                def keep(hidden: Tensor) -> Tensor:
                    acts[site.name] = hidden.detach()
                    return hidden

                return keep

            with hooks_removed([attach_edit(root, arch, s, keeper(s)) for s in sites]):
                out = forward().logits
        return Readout(acts, out.detach())
