"""Train / validation / test splits by group (template), never by example.

Examples filled from one template are near-duplicates; splitting them across train and test
would measure memorisation. Every split here assigns whole groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from jaxtyping import Int

from auditlens.errors import AuditlensError

__all__ = ["Split", "group_split", "holdout_split"]


@dataclass(frozen=True)
class Split:
    """Index arrays of the train, validation and test examples."""

    train: Int[np.ndarray, " n_train"]
    val: Int[np.ndarray, " n_val"]
    test: Int[np.ndarray, " n_test"]

    def groups_of(self, groups: Sequence[str]) -> dict[str, set[str]]:
        """The set of groups in each part."""
        return {
            part: {groups[int(i)] for i in getattr(self, part)} for part in ("train", "val", "test")
        }

    def check_disjoint(self, groups: Sequence[str]) -> None:
        """Raise if any group appears in two parts (a leak)."""
        seen = self.groups_of(groups)
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            shared = seen[a] & seen[b]
            if shared:
                raise AuditlensError(f"groups shared by {a} and {b}: {sorted(shared)[:5]}")

    def to_json(self) -> dict[str, Any]:
        return {"n_train": len(self.train), "n_val": len(self.val), "n_test": len(self.test)}


def _ensure_both_labels(split: Split, labels: Sequence[int] | np.ndarray | None) -> None:
    if labels is None:
        return
    y = np.asarray(labels)
    for part in ("train", "val", "test"):
        idx = getattr(split, part)
        if len(idx) and len(np.unique(y[idx])) < 2:
            raise AuditlensError(
                f"the {part} split holds only one label; use more groups or other fractions"
            )


def group_split(
    groups: Sequence[str],
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    labels: Sequence[int] | np.ndarray | None = None,
) -> Split:
    """Assign whole groups at random to train, validation and test (fractions of groups).

    With ``labels`` given, every non-empty part must hold both labels.
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1:
        raise AuditlensError("val_fraction and test_fraction must lie in [0, 1)")
    if val_fraction + test_fraction >= 1:
        raise AuditlensError("val_fraction + test_fraction must be below 1")
    unique = sorted(set(groups))
    if len(unique) < 3 and (val_fraction > 0 and test_fraction > 0):
        raise AuditlensError(f"need at least 3 groups to split, got {len(unique)}")
    rng = np.random.default_rng(seed)
    perm = [unique[i] for i in rng.permutation(len(unique))]
    n_test = max(1, round(test_fraction * len(unique))) if test_fraction > 0 else 0
    n_val = max(1, round(val_fraction * len(unique))) if val_fraction > 0 else 0
    test_g, val_g = set(perm[:n_test]), set(perm[n_test : n_test + n_val])
    part = np.array([2 if g in test_g else 1 if g in val_g else 0 for g in groups])
    split = Split(*(np.flatnonzero(part == k) for k in range(3)))
    if len(split.train) == 0:
        raise AuditlensError("the train split is empty; lower val_fraction/test_fraction")
    _ensure_both_labels(split, labels)
    return split


def holdout_split(
    groups: Sequence[str],
    test_mask: Sequence[bool],
    *,
    val_mask: Sequence[bool] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    labels: Sequence[int] | np.ndarray | None = None,
) -> Split:
    """Test = the examples under ``test_mask`` (e.g. held-out CWE families).

    Validation is ``val_mask`` if given (e.g. held-out templates of the training families),
    else a random ``val_fraction`` of the remaining groups. Groups must not straddle parts.
    """
    test = np.asarray(test_mask, dtype=bool)
    if len(test) != len(groups):
        raise AuditlensError("test_mask must have one entry per example")
    if val_mask is not None:
        val = np.asarray(val_mask, dtype=bool) & ~test
    else:
        rest = [g for g, t in zip(groups, test, strict=True) if not t]
        inner = group_split(rest, val_fraction=val_fraction, test_fraction=0.0, seed=seed)
        rest_index = np.flatnonzero(~test)
        val = np.zeros(len(groups), dtype=bool)
        val[rest_index[inner.val]] = True
    train = ~test & ~val
    split = Split(np.flatnonzero(train), np.flatnonzero(val), np.flatnonzero(test))
    if len(split.train) == 0:
        raise AuditlensError("the train split is empty")
    split.check_disjoint(groups)
    _ensure_both_labels(split, labels)
    return split
