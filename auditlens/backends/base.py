"""The backend interface: one forward pass of one side, reading activations at sites."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from jaxtyping import Float, Int
from torch import Tensor

from auditlens.errors import AuditlensError

if TYPE_CHECKING:
    from auditlens.models import ModelSide
    from auditlens.sites import ArchSpec, Site

__all__ = ["Backend", "Readout", "get_backend"]


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
        remote: bool = False,
    ) -> Readout: ...


def get_backend(name: str) -> Backend:
    """A backend by name: ``nnsight`` (default) or ``transformer_lens``."""
    if name == "nnsight":
        from auditlens.backends.nnsight_backend import NNsightBackend

        return NNsightBackend()
    if name in ("transformer_lens", "tl"):
        from auditlens.backends.tl_backend import TransformerLensBackend

        return TransformerLensBackend()
    raise AuditlensError(f"unknown backend {name!r}; choose nnsight or transformer_lens")
