"""A bounded running top-k of scored items (for "most changed tokens" lists)."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunningTopK"]


@dataclass
class RunningTopK:
    """Keeps the ``k`` largest (score, item) pairs seen; memory is O(k)."""

    k: int
    _heap: list[tuple[float, int, Any]] = field(default_factory=list)
    _count: int = 0

    def threshold(self) -> float:
        """The smallest score that still enters (``-inf`` until full)."""
        return self._heap[0][0] if len(self._heap) >= self.k else float("-inf")

    def push(self, score: float, item: Any) -> None:
        self._count += 1
        entry = (score, self._count, item)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, entry)
        elif score > self._heap[0][0]:
            heapq.heapreplace(self._heap, entry)

    def items(self) -> list[tuple[float, Any]]:
        """Entries from the highest score down."""
        return [(s, it) for s, _, it in sorted(self._heap, key=lambda e: (-e[0], e[1]))]
