"""A bounded running top-k of scored items (for "most changed tokens" lists)."""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunningTopK"]


@dataclass
class RunningTopK:
    """Keeps the ``k`` largest (score, item) pairs seen; memory is O(k).

    Items pushed with the same ``key`` are duplicates (e.g. the same context text): only the
    highest-scoring one is kept, so a text shared by many prompts fills one row, not ``k``.
    """

    k: int
    _heap: list[tuple[float, int, Any, Hashable]] = field(default_factory=list)
    _count: int = 0

    def threshold(self) -> float:
        """The smallest score that still enters (``-inf`` until full)."""
        return self._heap[0][0] if len(self._heap) >= self.k else float("-inf")

    def push(self, score: float, item: Any, key: Hashable = None) -> None:
        self._count += 1
        if key is not None:
            same = [i for i, e in enumerate(self._heap) if e[3] == key]
            if same:
                if score <= self._heap[same[0]][0]:
                    return
                self._heap[same[0]] = (score, self._count, item, key)
                heapq.heapify(self._heap)
                return
        entry = (score, self._count, item, key)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, entry)
        elif score > self._heap[0][0]:
            heapq.heapreplace(self._heap, entry)

    def items(self) -> list[tuple[float, Any]]:
        """Entries from the highest score down."""
        return [(e[0], e[2]) for e in sorted(self._heap, key=lambda e: (-e[0], e[1]))]
