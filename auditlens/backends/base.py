"""The backend interface: one forward pass of one side, reading activations at sites."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from jaxtyping import Float, Int
from torch import Tensor

from auditlens.models import ModelSide
from auditlens.sites import ArchSpec, Site

__all__ = ["Backend", "Readout"]


@dataclass
class Readout:
    """Activations of one forward pass, keyed by canonical site name, and optional logits."""

    acts: dict[str, Float[Tensor, "batch seq d_model"]]
    logits: Float[Tensor, "batch seq vocab"] | None


class Backend(Protocol):
    """Runs one model side on a batch and returns the activations at the requested sites."""

    name: str

    def run(
        self,
        side: ModelSide,
        arch: ArchSpec,
        input_ids: Int[Tensor, "batch seq"],
        attention_mask: Int[Tensor, "batch seq"],
        sites: list[Site],
        *,
        logits: bool = False,
    ) -> Readout: ...
