"""The KV cache generation decodes with: preallocated buffers, rows selectable.

:func:`make_cache` builds transformers' ``DynamicCache`` for the model and swaps its
full-attention layers for buffer layers that append into storage preallocated for
``prompt + max_new_tokens`` and hand attention views of it (the same numbers in the same
layout as ``DynamicLayer``'s concatenation, without copying the whole cache every token).
Where transformers' layer API differs from the one this was written against, the plain cache
is used instead (slower, never wrong).
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import Tensor

__all__ = ["buffer_layer_fits", "cache_select", "can_select_rows", "make_cache"]


def make_cache(model: Any, capacity: int) -> Any:
    """A DynamicCache whose full-attention layers write into buffers of ``capacity`` tokens.

    Falls back to transformers' plain DynamicCache where its layer API differs from the one
    the buffer layer was written against (checked by signature, so another transformers
    version degrades to the slower cache instead of failing).
    """
    from transformers.cache_utils import DynamicCache, DynamicLayer

    try:
        cache = DynamicCache(config=model.config)
    except (AttributeError, KeyError, TypeError, ValueError):
        return DynamicCache()
    if (
        buffer_layer_fits(DynamicLayer)
        and cache.layers
        and all(type(layer) is DynamicLayer for layer in cache.layers)
    ):
        cache.layers = [_new_buffer_layer(capacity) for _ in cache.layers]
    return cache


def buffer_layer_fits(layer_class: Any) -> bool:
    try:
        init = list(inspect.signature(layer_class.lazy_initialization).parameters)
        update = list(inspect.signature(layer_class.update).parameters)
    except (AttributeError, TypeError, ValueError):
        return False
    return (
        init[:3] == ["self", "key_states", "value_states"]
        and update[:3] == ["self", "key_states", "value_states"]
        and all(hasattr(layer_class, n) for n in ("get_seq_length", "batch_select_indices"))
    )


def can_select_rows(cache: Any) -> bool:
    """Whether :func:`cache_select` works on ``cache`` (rows can leave or be copied)."""
    layers: list[Any] = list(getattr(cache, "layers", None) or [])
    return bool(layers) and all(hasattr(layer, "batch_select_indices") for layer in layers)


def cache_select(cache: Any, index: Tensor) -> None:
    """Keep (or repeat) the batch rows ``index`` of every layer of ``cache``."""
    for layer in cache.layers:
        layer.batch_select_indices(index)


def _buffer_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class BufferLayer(DynamicLayer):
        """A DynamicLayer that appends into a preallocated buffer and returns views of it.

        The keys and values handed to attention are the same numbers in the same layout as
        DynamicLayer's concatenated tensors (views of the first ``length`` positions), so
        attention computes the same result without copying the cache every token.
        """

        def __init__(self, capacity: int) -> None:
            super().__init__()
            self.capacity = capacity
            self.length = 0
            self._k: Tensor | None = None
            self._v: Tensor | None = None

        def lazy_initialization(self, key_states: Tensor, value_states: Tensor) -> None:
            self.dtype, self.device = key_states.dtype, key_states.device
            b, h, _, d = key_states.shape
            cap = max(self.capacity, key_states.shape[-2])
            self._k = key_states.new_empty((b, h, cap, d))
            self._v = value_states.new_empty((b, value_states.shape[1], cap, value_states.shape[3]))
            self.length = 0
            self.is_initialized = True

        def _grow(self, needed: int) -> None:
            assert self._k is not None and self._v is not None
            cap = max(needed, 2 * self._k.shape[2])
            for name in ("_k", "_v"):
                old = getattr(self, name)
                new = old.new_empty((*old.shape[:2], cap, old.shape[3]))
                new[:, :, : self.length] = old[:, :, : self.length]
                setattr(self, name, new)

        def update(
            self, key_states: Tensor, value_states: Tensor, *args: Any, **kwargs: Any
        ) -> tuple[Tensor, Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            assert self._k is not None and self._v is not None
            end = self.length + key_states.shape[-2]
            if end > self._k.shape[2]:
                self._grow(end)
            self._k[:, :, self.length : end] = key_states
            self._v[:, :, self.length : end] = value_states
            self.length = end
            self.keys = self._k[:, :, :end]
            self.values = self._v[:, :, :end]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length if self.is_initialized else 0

        def batch_select_indices(self, indices: Tensor) -> None:
            if not self.is_initialized or self._k is None or self._v is None:
                return
            for name in ("_k", "_v"):
                old = getattr(self, name)
                new = old.new_empty((indices.shape[0], *old.shape[1:]))
                new[:, :, : self.length] = old[:, :, : self.length].index_select(0, indices)
                setattr(self, name, new)
            assert self._k is not None and self._v is not None
            self.keys = self._k[:, :, : self.length]
            self.values = self._v[:, :, : self.length]

        def crop(self, tokens_to_remove: int) -> None:
            super().crop(tokens_to_remove)
            if self.is_initialized and self.keys is not None:
                self.length = self.keys.shape[-2]

        def reset(self) -> None:
            self.length = 0
            self._k = self._v = None
            super().reset()

    return BufferLayer


_BUFFER_LAYER: list[type] = []


def _new_buffer_layer(capacity: int) -> Any:
    if not _BUFFER_LAYER:
        _BUFFER_LAYER.append(_buffer_layer_class())
    return _BUFFER_LAYER[0](capacity)
