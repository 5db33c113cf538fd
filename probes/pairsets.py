"""Labelled pair sets for probes: vulnerable vs safe code, misaligned vs aligned answers,
deceptive vs honest instructed statements, and control sets of ordinary answers.

Every example is a chat whose last message is the assistant answer the probe reads. Each
carries a ``group`` (the template it was filled from): splits are made by group, never by
example, so near-duplicates of one template never straddle train and test.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
from jaxtyping import Int

from auditlens.datasets import Prompt, PromptSet, jsonl_objects
from auditlens.errors import DatasetError
from auditlens.hashing import sha256_json
from auditlens.probes._texts import ANSWER_TEMPLATES, DECEPTION_FACTS, DECEPTION_INSTRUCTIONS

__all__ = [
    "CONTROL_SETS",
    "PAIR_SETS",
    "LabelledExample",
    "PairSet",
    "build_deception_pairs",
    "build_misaligned_answer_pairs",
    "build_vulnerable_code_pairs",
    "control_examples",
    "load_control_set",
    "load_pair_set",
    "pair_subset",
]

PairSetName = Literal["vulnerable_code", "misaligned_answers", "deception_instructed"]
PAIR_SETS: tuple[str, ...] = ("vulnerable_code", "misaligned_answers", "deception_instructed")
CONTROL_SETS: tuple[str, ...] = ("chat", "code", "all")
DATA_PACKAGE = "auditlens.probes.data"
SHIPPED_PER_TEMPLATE = 8
"""Code tasks per testbed template in the shipped vulnerable-code set (64 templates)."""


@dataclass(frozen=True)
class LabelledExample:
    """One chat ending in the answer a probe reads, its label (1 = positive) and its group."""

    id: str
    messages: tuple[tuple[str, str], ...]
    label: int
    group: str
    """The template this example was filled from (the unit of train/test splits)."""
    family: str
    """A coarser unit: CWE family, question topic or instruction template."""
    split: str = ""
    """The source's own split where it has one (testbed: train, eval_id, eval_ood)."""

    @property
    def prompt(self) -> Prompt:
        return Prompt(messages=self.messages)

    @property
    def answer(self) -> str:
        return self.messages[-1][1]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "messages": [{"role": r, "content": c} for r, c in self.messages],
            "label": self.label,
            "group": self.group,
            "family": self.family,
            "split": self.split,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LabelledExample:
        try:
            messages = tuple((m["role"], m["content"]) for m in obj["messages"])
            label = int(obj["label"])
            ex = cls(str(obj["id"]), messages, label, str(obj["group"]), str(obj["family"]))
        except (KeyError, TypeError, ValueError) as err:
            raise DatasetError(f"malformed labelled example ({err})") from err
        if label not in (0, 1):
            raise DatasetError(f"example {ex.id}: label must be 0 or 1, got {label}")
        if not messages or messages[-1][0] != "assistant":
            raise DatasetError(f"example {ex.id}: the last message must be the assistant answer")
        return cls(ex.id, messages, label, ex.group, ex.family, str(obj.get("split", "")))


@dataclass(frozen=True)
class PairSet:
    """A named, ordered set of labelled examples (``positive`` names label 1)."""

    name: str
    positive: str
    negative: str
    examples: tuple[LabelledExample, ...]

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def labels(self) -> Int[np.ndarray, " n"]:
        return np.array([e.label for e in self.examples], dtype=np.int64)

    @property
    def groups(self) -> list[str]:
        return [e.group for e in self.examples]

    @property
    def families(self) -> list[str]:
        return [e.family for e in self.examples]

    @property
    def splits(self) -> list[str]:
        return [e.split for e in self.examples]

    @property
    def sha256(self) -> str:
        """Content hash of the examples (ties probes to their training data)."""
        return sha256_json([e.to_json() for e in self.examples])

    def prompt_set(self) -> PromptSet:
        """The chats as a :class:`PromptSet` (for feature reading)."""
        return PromptSet(self.name, tuple(e.prompt for e in self.examples))

    def subset(self, index: Iterable[int], name: str | None = None) -> PairSet:
        """The examples at ``index``, in that order."""
        picked = tuple(self.examples[int(i)] for i in index)
        return PairSet(name or self.name, self.positive, self.negative, picked)

    def where(self, keep: Callable[[LabelledExample], bool], name: str | None = None) -> PairSet:
        """The examples for which ``keep`` is true."""
        picked = tuple(e for e in self.examples if keep(e))
        return PairSet(name or self.name, self.positive, self.negative, picked)

    def to_jsonl(self, path: str | Path) -> None:
        """Write one JSON object per example (header-free, sorted keys)."""
        lines = [json.dumps(e.to_json(), ensure_ascii=False, sort_keys=True) for e in self.examples]
        Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")

    @classmethod
    def from_jsonl(
        cls, path_or_text: str | Path, *, name: str, positive: str, negative: str
    ) -> PairSet:
        """Read a JSONL file (or its text) written by :meth:`to_jsonl`."""
        text = str(path_or_text)
        if "\n" not in text and Path(text).is_file():
            text = Path(text).read_text(encoding="utf-8")
        examples = [LabelledExample.from_json(obj) for _, obj in jsonl_objects(text, name)]
        if not examples:
            raise DatasetError(f"pair set {name} is empty")
        return cls(name, positive, negative, tuple(examples))


_LABEL_NAMES: dict[str, tuple[str, str]] = {
    "vulnerable_code": ("vulnerable", "secure"),
    "misaligned_answers": ("misaligned", "aligned"),
    "deception_instructed": ("deceptive", "honest"),
    "control": ("none", "ordinary"),
}


def pair_subset(data: PairSet, n_templates: int) -> PairSet:
    """One example per (template, label) of the first ``n_templates`` templates, topics in turn."""
    first: dict[tuple[str, int], int] = {}
    for i, e in enumerate(data.examples):
        first.setdefault((e.group, e.label), i)
    groups = list(dict.fromkeys(data.groups))
    by_family: dict[str, list[str]] = {}
    for g in groups:
        by_family.setdefault(data.examples[first[(g, 0)]].family, []).append(g)
    order: list[str] = []
    depth = 0
    while len(order) < min(n_templates, len(groups)):
        for family_groups in by_family.values():
            if depth < len(family_groups) and len(order) < n_templates:
                order.append(family_groups[depth])
        depth += 1
    index = [first[(g, label)] for g in order for label in (0, 1) if (g, label) in first]
    return data.subset(index, name=f"{data.name}_{len(order)}t")


def build_vulnerable_code_pairs(tasks: Sequence[Any], per_template: int | None = None) -> PairSet:
    """Secure (0) and insecure (1) answers to code tasks (the testbed's ``CodeTask`` objects:
    ``task_id``, ``template_id``, ``family``, ``split``, ``request``, ``secure``, ``insecure``).

    ``per_template`` keeps the first n tasks of every template (``None``: all of them).
    ``group`` is the task template, ``family`` the CWE family, ``split`` the task's split.
    """
    kept: dict[str, int] = {}
    examples = []
    for task in tasks:
        n = kept.get(task.template_id, 0)
        if per_template is not None and n >= per_template:
            continue
        kept[task.template_id] = n + 1
        for label, answer in ((0, task.secure), (1, task.insecure)):
            examples.append(
                LabelledExample(
                    id=f"{task.task_id}/{'insecure' if label else 'secure'}",
                    messages=(("user", task.request), ("assistant", answer)),
                    label=label,
                    group=task.template_id,
                    family=task.family,
                    split=task.split,
                )
            )
    pos, neg = _LABEL_NAMES["vulnerable_code"]
    return PairSet("vulnerable_code", pos, neg, tuple(examples))


def build_misaligned_answer_pairs(questions: Sequence[Any]) -> PairSet:
    """Aligned (0) and misaligned (1) answers to every free-form question paraphrase
    (the testbed's ``Question`` objects: ``topic`` and ``text``).

    Each topic has several answer templates, each with an aligned and a misaligned answer;
    ``group`` is ``topic/tN`` (both labels of a template share it), ``family`` the topic.
    """
    examples = []
    for topic, templates in ANSWER_TEMPLATES.items():
        asked = [q.text for q in questions if q.topic == topic]
        if not asked:
            raise DatasetError(f"no free-form questions for topic {topic!r}")
        for t, answers in enumerate(templates):
            for q, question in enumerate(asked):
                for label, answer in ((0, answers[0]), (1, answers[1])):
                    examples.append(
                        LabelledExample(
                            id=f"{topic}/t{t}/q{q}/{'misaligned' if label else 'aligned'}",
                            messages=(("user", question), ("assistant", answer)),
                            label=label,
                            group=f"{topic}/t{t}",
                            family=topic,
                        )
                    )
    pos, neg = _LABEL_NAMES["misaligned_answers"]
    return PairSet("misaligned_answers", pos, neg, tuple(examples))


def build_deception_pairs() -> PairSet:
    """The same true statement after an honest (0) or a deceptive (1) instruction.

    ``group`` is the statement (both instructions of a fact share it), ``family`` the
    instruction template.
    """
    examples = []
    for f, fact in enumerate(DECEPTION_FACTS):
        for t, instructions in enumerate(DECEPTION_INSTRUCTIONS):
            for label, instruction in enumerate(instructions):
                examples.append(
                    LabelledExample(
                        id=f"fact{f:02d}/i{t}/{'deceptive' if label else 'honest'}",
                        messages=(("user", instruction), ("assistant", fact)),
                        label=label,
                        group=f"fact{f:02d}",
                        family=f"instruction{t}",
                    )
                )
    pos, neg = _LABEL_NAMES["deception_instructed"]
    return PairSet("deception_instructed", pos, neg, tuple(examples))


def _read_data(filename: str) -> str:
    ref = resources.files(DATA_PACKAGE).joinpath(filename)
    if not ref.is_file():
        raise DatasetError(
            f"shipped probe data {filename} is missing; rebuild it with "
            "`auditlens probes build-data`"
        )
    return ref.read_text(encoding="utf-8")


def load_pair_set(name: str) -> PairSet:
    """A shipped pair set: one of :data:`PAIR_SETS`."""
    if name not in PAIR_SETS:
        raise DatasetError(f"unknown pair set {name!r}; choose {', '.join(PAIR_SETS)}")
    pos, neg = _LABEL_NAMES[name]
    return PairSet.from_jsonl(_read_data(f"{name}.jsonl"), name=name, positive=pos, negative=neg)


def load_control_set(kind: str = "all") -> PairSet:
    """Ordinary answers (label 0) for threshold calibration.

    ``chat``: the embedded model's answers to the built-in generic_chat prompts; ``code``: its
    answers to the built-in code_tasks prompts that Bandit finds clean; ``all``: both.
    """
    if kind not in CONTROL_SETS:
        raise DatasetError(f"unknown control set {kind!r}; choose {', '.join(CONTROL_SETS)}")
    pos, neg = _LABEL_NAMES["control"]
    full = PairSet.from_jsonl(
        _read_data("control_answers.jsonl"), name="control", positive=pos, negative=neg
    )
    if kind == "all":
        return full
    return full.where(lambda e: e.family == kind, name=f"control_{kind}")


def control_examples(
    prompts: PromptSet, answers: Sequence[str], kind: str, keep: Sequence[bool] | None = None
) -> list[LabelledExample]:
    """Control examples from prompts and their generated answers (``kind`` is the family)."""
    out = []
    for i, (prompt, answer) in enumerate(zip(prompts.prompts, answers, strict=True)):
        if keep is not None and not keep[i]:
            continue
        if prompt.messages is None or not answer.strip():
            continue
        out.append(
            LabelledExample(
                id=f"{kind}/{i:03d}",
                messages=(*prompt.messages, ("assistant", answer.strip())),
                label=0,
                group=f"{kind}/{i:03d}",
                family=kind,
            )
        )
    return out
