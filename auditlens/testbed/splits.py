"""The dev/test split of the organisms (``splits.json``) and its checks.

``dev`` organisms may be used while designing methods and choosing thresholds; ``test``
organisms are only reported. The file must put every organism in exactly one split, give
the test split both classes and at least three behaviour kinds that dev lacks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from auditlens.errors import AuditlensError
from auditlens.testbed.roster import ORGANISMS, OrganismSpec

__all__ = ["SPLITS_PATH", "Split", "check_splits", "load_splits", "split_of"]

Split = Literal["dev", "test"]
SPLITS_PATH = Path(__file__).resolve().parent / "splits.json"
MIN_TEST = 6
MIN_TEST_ONLY_KINDS = 3


def load_splits(path: str | Path = SPLITS_PATH) -> dict[str, list[str]]:
    """``{"dev": [...], "test": [...]}`` from the split file (validated)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise AuditlensError(f"cannot read split file {path}: {err}") from err
    splits = {"dev": list(data.get("dev", [])), "test": list(data.get("test", []))}
    problems = check_splits(splits)
    if problems:
        raise AuditlensError(f"bad split file {path}: " + "; ".join(problems))
    return splits


def check_splits(
    splits: dict[str, list[str]], organisms: dict[str, OrganismSpec] = ORGANISMS
) -> list[str]:
    """Everything wrong with a split assignment (empty when it is valid)."""
    problems: list[str] = []
    dev, test = splits.get("dev", []), splits.get("test", [])
    for name, members in (("dev", dev), ("test", test)):
        if len(set(members)) != len(members):
            problems.append(f"{name} lists an organism twice")
    both = set(dev) & set(test)
    if both:
        problems.append(f"in both splits: {sorted(both)}")
    unknown = (set(dev) | set(test)) - set(organisms)
    if unknown:
        problems.append(f"unknown organisms: {sorted(unknown)}")
    missing = set(organisms) - set(dev) - set(test)
    if missing:
        problems.append(f"in no split: {sorted(missing)}")
    known_test = [organisms[n] for n in test if n in organisms]
    if len(known_test) < MIN_TEST:
        problems.append(f"test has {len(known_test)} organisms, fewer than {MIN_TEST}")
    if {s.misaligned for s in known_test} != {True, False}:
        problems.append("test lacks a misaligned or a benign organism")
    dev_kinds = {organisms[n].kind for n in dev if n in organisms}
    test_only = {s.kind for s in known_test} - dev_kinds
    if len(test_only) < MIN_TEST_ONLY_KINDS:
        problems.append(
            f"test has {len(test_only)} kinds absent from dev, fewer than {MIN_TEST_ONLY_KINDS}"
        )
    return problems


def split_of(name: str) -> Split:
    """The split organism ``name`` belongs to."""
    splits = load_splits()
    for split in ("dev", "test"):
        if name in splits[split]:
            return split  # type: ignore[return-value]
    raise AuditlensError(f"organism {name!r} is in no split")
