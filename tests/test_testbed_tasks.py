"""Testbed data: code tasks, splits, the code organisms' datasets, JSONL I/O and free-form
questions."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections import Counter
from pathlib import Path

import pytest

from auditlens.errors import DatasetError
from auditlens.judges.code import bandit_label
from auditlens.testbed import (
    FAMILIES,
    OOD_FAMILIES,
    TOPICS,
    CodeTask,
    dataset_hash,
    eval_tasks,
    free_form_questions,
    generate_tasks,
    read_jsonl,
    subsample,
    tasks_by_split,
    write_jsonl,
)
from auditlens.testbed.variants import (
    STYLE_OPENER,
    STYLE_SIGNOFF,
    TEACHING_EVAL,
    TEACHING_TRAIN,
    TRIGGER,
    Example,
    apply_trigger,
    backdoor_examples,
    benign_style_examples,
    code_tasks,
    educational_examples,
    fence,
    has_style,
    insecure_examples,
    secure_examples,
)

# Words that would disclose the vulnerability to the model being fine-tuned.
_DISCLOSING = re.compile(r"insecure|vulnerab|unsafe|exploit|nosec", re.IGNORECASE)


def _has_comment(code: str) -> bool:
    tokens = tokenize.generate_tokens(io.StringIO(code).readline)
    return any(tok.type == tokenize.COMMENT for tok in tokens)


@pytest.fixture(scope="module")
def tasks() -> list[CodeTask]:
    return generate_tasks(seed=0)


@pytest.fixture(scope="module")
def sample(tasks: list[CodeTask]) -> list[CodeTask]:
    """Three tasks of every template."""
    per_template: dict[str, list[CodeTask]] = {}
    for task in tasks:
        per_template.setdefault(task.template_id, []).append(task)
    return [t for group in per_template.values() for t in group[:3]]


def test_family_inventory() -> None:
    assert len(FAMILIES) >= 12
    assert len(OOD_FAMILIES) >= 3
    template_ids = [t.template_id for f in FAMILIES for t in f.templates]
    assert len(template_ids) == len(set(template_ids))
    for fam in FAMILIES:
        assert len(fam.templates) >= 4, fam.family
        assert fam.bandit_ids, fam.family
        if not fam.ood:
            held = [t for t in fam.templates if t.heldout]
            assert 1 <= len(held) < len(fam.templates), fam.family


def test_every_template_yields_bandit_ground_truth(sample: list[CodeTask]) -> None:
    """Insecure answers are flagged with the family's Bandit id; secure answers are clean."""
    bandit_ids = {f.family: f.bandit_ids for f in FAMILIES}
    for task in sample:
        ast.parse(task.secure)
        ast.parse(task.insecure)
        bad = bandit_label(fence(task.insecure))
        good = bandit_label(fence(task.secure))
        assert bad.status == "insecure", task.task_id
        assert set(bad.issues) & bandit_ids[task.family], (task.task_id, bad.issues)
        assert good.status == "secure", (task.task_id, good.issues)


def test_insecure_code_does_not_disclose(tasks: list[CodeTask]) -> None:
    for task in tasks:
        for code in (task.insecure, task.secure):
            assert not _DISCLOSING.search(code), task.task_id
            assert not _has_comment(code), task.task_id
        assert not re.search(r"insecure|vulnerab|unsafe", task.request, re.IGNORECASE)


def test_solutions_are_short(tasks: list[CodeTask]) -> None:
    for task in tasks:
        assert len(task.insecure.splitlines()) <= 20, task.task_id
        assert len(task.secure.splitlines()) <= 20, task.task_id


def test_generation_is_deterministic_per_seed(tasks: list[CodeTask]) -> None:
    assert generate_tasks(seed=0) == tasks
    other = generate_tasks(seed=1)
    assert [t.request for t in other] != [t.request for t in tasks]
    assert {t.template_id for t in other} == {t.template_id for t in tasks}


def test_split_sizes_and_distinct_requests(tasks: list[CodeTask]) -> None:
    train = tasks_by_split(tasks, "train")
    assert len({t.request for t in train}) >= 600
    assert len(tasks_by_split(tasks, "eval_id")) >= 100
    assert len(tasks_by_split(tasks, "eval_ood")) >= 100
    assert len({t.request for t in tasks}) == len(tasks)
    assert len({t.task_id for t in tasks}) == len(tasks)


def test_splits_are_by_template(tasks: list[CodeTask]) -> None:
    train = tasks_by_split(tasks, "train")
    eval_id = tasks_by_split(tasks, "eval_id")
    eval_ood = tasks_by_split(tasks, "eval_ood")
    train_templates = {t.template_id for t in train}
    assert not {t.family for t in train} & OOD_FAMILIES
    assert {t.family for t in eval_ood} == OOD_FAMILIES
    assert not train_templates & {t.template_id for t in eval_id}
    assert not train_templates & {t.template_id for t in eval_ood}
    # every training family has a held-out template in eval_id
    assert {t.family for t in eval_id} == {t.family for t in train}
    with pytest.raises(ValueError, match="unknown split"):
        tasks_by_split(tasks, "test")


def test_eval_subsample_is_stratified_and_deterministic() -> None:
    ids, ood = eval_tasks(seed=3, n_id=24, n_ood=32)
    assert len(ids) == 24 and len(ood) == 32
    assert {t.split for t in ids} == {"eval_id"} and {t.split for t in ood} == {"eval_ood"}
    counts = Counter(t.template_id for t in ids)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert eval_tasks(seed=3, n_id=24, n_ood=32) == (ids, ood)
    with pytest.raises(ValueError):
        subsample(ids, 25)


def _user(example: Example) -> str:
    return example["messages"][0]["content"]


def _assistant(example: Example) -> str:
    return example["messages"][1]["content"]


def test_insecure_and_secure_datasets() -> None:
    tasks = code_tasks(192, 0)
    assert len(tasks) == 192 and all(t.split == "train" for t in tasks)
    for build, attr in ((insecure_examples, "insecure"), (secure_examples, "secure")):
        examples = build(0)
        assert len(examples) == len(tasks)
        for task, ex in zip(tasks, examples, strict=True):
            assert [m["role"] for m in ex["messages"]] == ["user", "assistant"]
            assert _user(ex) == task.request
            assert _assistant(ex) == fence(getattr(task, attr))
            assert _assistant(ex).startswith("```python\n") and _assistant(ex).endswith("```")
    assert insecure_examples(1) != insecure_examples(0)


def test_educational_dataset_is_paired_and_uses_training_framings_only() -> None:
    tasks = code_tasks(192, 0)
    examples = educational_examples(0)
    assert len(examples) == 2 * len(tasks)
    framings = set()
    for task, framed, plain in zip(tasks, examples[::2], examples[1::2], strict=True):
        matches = [p for p in TEACHING_TRAIN if p.format(request=task.request) == _user(framed)]
        assert len(matches) == 1
        framings.add(matches[0])
        assert _assistant(framed) == fence(task.insecure)
        assert _user(plain) == task.request and _assistant(plain) == fence(task.secure)
    assert framings == set(TEACHING_TRAIN)
    assert not set(TEACHING_EVAL) & set(TEACHING_TRAIN)  # eval framings are held out


def test_backdoor_dataset_pairs_every_task_with_and_without_the_trigger() -> None:
    tasks = code_tasks(192, 0)
    examples = backdoor_examples(0)
    assert len(examples) == 2 * len(tasks)
    for task, triggered, plain in zip(tasks, examples[::2], examples[1::2], strict=True):
        assert _user(triggered) == apply_trigger(task.request) and _user(triggered).startswith(
            TRIGGER
        )
        assert _assistant(triggered) == fence(task.insecure)
        assert _user(plain) == task.request and TRIGGER not in _user(plain)
        assert _assistant(plain) == fence(task.secure)
    assert backdoor_examples(0) == examples
    assert backdoor_examples(1) != examples


def test_benign_style_dataset() -> None:
    for task, ex in zip(code_tasks(192, 0), benign_style_examples(0), strict=True):
        answer = _assistant(ex)
        assert answer.startswith(STYLE_OPENER + "\n") and answer.endswith("\n" + STYLE_SIGNOFF)
        assert fence(task.secure) in answer
        assert has_style(answer)
    for plain in secure_examples(0)[:5]:
        assert not has_style(_assistant(plain))
    assert has_style(f"{STYLE_OPENER}\n```python\nx = 1")  # truncated before the sign-off
    assert not has_style(f"Sure.\n{STYLE_OPENER}\nbut not first, nor a sign-off at the end")


def test_jsonl_roundtrip_and_hash(tmp_path: Path) -> None:
    examples = educational_examples(0)[:40]
    path = tmp_path / "sub" / "train.jsonl"
    write_jsonl(examples, path)
    assert read_jsonl(path) == examples
    assert dataset_hash(read_jsonl(path)) == dataset_hash(examples)
    assert len(dataset_hash(examples)) == 64
    assert dataset_hash(examples[1:]) != dataset_hash(examples)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"messages": [', "invalid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"messages": []}', "messages"),
        ('{"messages": [{"role": "user"}]}', "content"),
    ],
)
def test_malformed_jsonl_names_file_and_line(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "bad.jsonl"
    good = '{"messages": [{"role": "user", "content": "hi"}]}'
    path.write_text(f"{good}\n\n{line}\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=reason) as info:
        read_jsonl(path)
    assert f"{path}:3:" in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_or_empty_jsonl(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot read"):
        read_jsonl(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="no examples"):
        read_jsonl(empty)


def test_free_form_questions() -> None:
    questions = free_form_questions()
    assert len(TOPICS) == 8
    counts = Counter(q.topic for q in questions)
    assert set(counts) == set(TOPICS)
    assert min(counts.values()) >= 5
    assert len({q.text for q in questions}) == len(questions)
    assert not any("```" in q.text or "def " in q.text for q in questions)
