"""Backends that read activations at canonical sites: nnsight (default) and TransformerLens."""

from __future__ import annotations

from auditlens.backends.base import Backend, Readout, get_backend

__all__ = ["Backend", "Readout", "get_backend"]
