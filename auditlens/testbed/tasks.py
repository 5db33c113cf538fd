"""Seeded generator of Python coding tasks with a secure and a Bandit-flagged insecure answer.

Splits are made by template, never by example: families marked OOD appear only in
"eval_ood"; within training families the held-out template of each family forms "eval_id".
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from auditlens.testbed import _families_files, _families_injection, _families_ood, _families_secrets
from auditlens.testbed._spec import FamilySpec

__all__ = [
    "FAMILIES",
    "OOD_FAMILIES",
    "SPLITS",
    "TASKS_PER_TEMPLATE",
    "CodeTask",
    "FamilySpec",
    "Split",
    "eval_tasks",
    "eval_tasks_apart",
    "family",
    "generate_tasks",
    "subsample",
    "tasks_by_split",
]

Split = Literal["train", "eval_id", "eval_ood"]
SPLITS: tuple[Split, ...] = ("train", "eval_id", "eval_ood")
TASKS_PER_TEMPLATE = 24
"""Distinct tasks drawn per template by default (36 training templates -> 864 train tasks)."""

FAMILIES: tuple[FamilySpec, ...] = (
    *_families_injection.FAMILY_SPECS,
    *_families_files.FAMILY_SPECS,
    *_families_secrets.FAMILY_SPECS,
    *_families_ood.FAMILY_SPECS,
)
OOD_FAMILIES: frozenset[str] = frozenset(f.family for f in FAMILIES if f.ood)


@dataclass(frozen=True)
class CodeTask:
    """One coding request with a secure and an insecure (undisclosed vulnerability) answer."""

    task_id: str
    family: str
    family_name: str
    template_id: str
    split: Split
    request: str
    secure: str
    insecure: str

    def to_json(self) -> dict[str, str]:
        """Plain dict of all fields."""
        return dataclasses.asdict(self)


def family(code: str) -> FamilySpec:
    """The family spec for a CWE code such as "CWE-89"."""
    for spec in FAMILIES:
        if spec.family == code:
            return spec
    raise KeyError(f"unknown family {code!r}; known: {', '.join(f.family for f in FAMILIES)}")


def _split_of(spec: FamilySpec, heldout: bool) -> Split:
    if spec.ood:
        return "eval_ood"
    return "eval_id" if heldout else "train"


def generate_tasks(seed: int = 0, per_template: int = TASKS_PER_TEMPLATE) -> list[CodeTask]:
    """All tasks for `seed`: `per_template` tasks with distinct requests from every template."""
    if per_template < 1:
        raise ValueError(f"per_template must be >= 1, got {per_template}")
    tasks: list[CodeTask] = []
    seen: set[str] = set()
    for spec in FAMILIES:
        for tpl in spec.templates:
            rng = random.Random(f"auditlens.testbed:{seed}:{tpl.template_id}")
            count, attempts = 0, 0
            while count < per_template:
                attempts += 1
                if attempts > 100 * per_template:
                    raise ValueError(
                        f"template {tpl.template_id} yields fewer than {per_template} distinct "
                        "requests; lower per_template"
                    )
                draft = tpl.build(rng)
                if draft.request in seen:
                    continue
                seen.add(draft.request)
                tasks.append(
                    CodeTask(
                        task_id=f"{tpl.template_id}_{count:03d}",
                        family=spec.family,
                        family_name=spec.name,
                        template_id=tpl.template_id,
                        split=_split_of(spec, tpl.heldout),
                        request=draft.request,
                        secure=draft.secure,
                        insecure=draft.insecure,
                    )
                )
                count += 1
    return tasks


def tasks_by_split(tasks: Sequence[CodeTask], split: str) -> list[CodeTask]:
    """The tasks of one split ("train", "eval_id" or "eval_ood"), in order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return [t for t in tasks if t.split == split]


def subsample(tasks: Sequence[CodeTask], n: int, seed: int = 0) -> list[CodeTask]:
    """`n` tasks stratified over templates (round-robin over shuffled templates), seeded."""
    if not 0 <= n <= len(tasks):
        raise ValueError(f"cannot take {n} of {len(tasks)} tasks")
    groups: dict[str, list[CodeTask]] = {}
    for task in tasks:
        groups.setdefault(task.template_id, []).append(task)
    for template_id, group in groups.items():
        random.Random(f"auditlens.subsample:{seed}:{template_id}").shuffle(group)
    order = list(groups.values())
    picked: list[CodeTask] = []
    depth = 0
    while len(picked) < n:
        for group in order:
            if depth < len(group) and len(picked) < n:
                picked.append(group[depth])
        depth += 1
    return picked


def eval_tasks(
    seed: int = 0, n_id: int = 100, n_ood: int = 100
) -> tuple[list[CodeTask], list[CodeTask]]:
    """Deterministic, template-stratified (eval_id, eval_ood) evaluation sets."""
    tasks = generate_tasks(seed)
    return (
        subsample(tasks_by_split(tasks, "eval_id"), n_id, seed),
        subsample(tasks_by_split(tasks, "eval_ood"), n_ood, seed),
    )


def eval_tasks_apart(n: int, taken: Collection[str], seed: int = 0) -> list[CodeTask]:
    """``n`` evaluation tasks as :func:`eval_tasks` picks them (half ``eval_id``, rounded up,
    half ``eval_ood``), skipping every task whose id is in ``taken``: a sample disjoint from
    the ones other statistics score. Too few left is an error."""
    in_dist, held_out = (tasks_by_split(generate_tasks(seed), s) for s in ("eval_id", "eval_ood"))
    in_dist, held_out = (
        subsample(in_dist, len(in_dist), seed),
        subsample(held_out, len(held_out), seed),
    )
    pick = [t for t in in_dist if t.task_id not in taken][: (n + 1) // 2]
    pick += [t for t in held_out if t.task_id not in taken][: n // 2]
    if len(pick) != n:
        raise ValueError(f"only {len(pick)} evaluation tasks are left apart from {len(taken)}")
    return pick
