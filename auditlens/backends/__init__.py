"""Backends that read activations at canonical sites: nnsight (default), TransformerLens, torch.

All three read the same site names and give the same activations (tests hold them to 1e-4).
"""

from __future__ import annotations

from collections.abc import Callable

from auditlens.backends.base import Backend, Readout
from auditlens.backends.nnsight_backend import NNsightBackend
from auditlens.backends.tl_backend import TransformerLensBackend
from auditlens.backends.torch_backend import TorchBackend
from auditlens.errors import AuditlensError

__all__ = ["BACKENDS", "Backend", "Readout", "get_backend"]

BACKENDS: dict[str, Callable[[], Backend]] = {
    "nnsight": NNsightBackend,
    "transformer_lens": TransformerLensBackend,
    "torch": TorchBackend,
}
"""Backend factories by name (``tl`` is accepted for ``transformer_lens``)."""


def get_backend(name: str) -> Backend:
    """A backend by name: ``nnsight`` (default), ``transformer_lens`` or ``torch``."""
    factory = BACKENDS.get("transformer_lens" if name == "tl" else name)
    if factory is None:
        raise AuditlensError(f"unknown backend {name!r}; choose {', '.join(BACKENDS)}")
    return factory()
