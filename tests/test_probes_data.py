"""Shipped probe data: pair sets match their builders, groups hold both labels, controls load."""

from __future__ import annotations

from collections import Counter

import pytest

from auditlens.errors import DatasetError
from auditlens.probes import PairSet, load_control_set, load_pair_set
from auditlens.probes.pairsets import (
    SHIPPED_PER_TEMPLATE,
    LabelledExample,
    build_deception_pairs,
    build_misaligned_answer_pairs,
    build_vulnerable_code_pairs,
)
from auditlens.testbed import free_form_questions, generate_tasks

REBUILD = "stale shipped data: run `auditlens probes build-data`"


def test_shipped_pair_sets_match_their_builders() -> None:
    shipped = load_pair_set("misaligned_answers")
    assert shipped == build_misaligned_answer_pairs(free_form_questions()), REBUILD
    assert load_pair_set("deception_instructed") == build_deception_pairs(), REBUILD
    shipped = load_pair_set("vulnerable_code")
    assert shipped == build_vulnerable_code_pairs(generate_tasks(0), SHIPPED_PER_TEMPLATE), REBUILD


@pytest.mark.parametrize("name", ["vulnerable_code", "misaligned_answers", "deception_instructed"])
def test_every_group_holds_both_labels_in_balance(name: str) -> None:
    data = load_pair_set(name)
    by_group: dict[str, Counter[int]] = {}
    for e in data.examples:
        by_group.setdefault(e.group, Counter())[e.label] += 1
        assert e.messages[-1][0] == "assistant" and e.answer.strip()
    assert all(c[0] == c[1] > 0 for c in by_group.values())
    assert len({e.id for e in data.examples}) == len(data)


def test_vulnerable_code_keeps_family_template_and_split() -> None:
    data = load_pair_set("vulnerable_code")
    splits = Counter(data.splits)
    assert set(splits) == {"train", "eval_id", "eval_ood"}
    ood = {e.family for e in data.examples if e.split == "eval_ood"}
    train = {e.family for e in data.examples if e.split == "train"}
    assert ood and not (ood & train)
    assert all(e.group.startswith(e.family.lower().replace("-", "")) for e in data.examples)


def test_misaligned_answers_cover_every_topic_with_several_templates() -> None:
    from auditlens.testbed import TOPICS

    data = load_pair_set("misaligned_answers")
    templates = Counter(e.family for e in data.examples if e.label == 1 and "/q0/" in e.id)
    assert set(templates) == set(TOPICS) and min(templates.values()) >= 3


def test_deception_pairs_share_the_statement() -> None:
    data = load_pair_set("deception_instructed")
    by_group: dict[str, set[str]] = {}
    for e in data.examples:
        by_group.setdefault(e.group, set()).add(e.answer)
    assert all(len(answers) == 1 for answers in by_group.values())


def test_control_sets() -> None:
    chat, code, both = load_control_set("chat"), load_control_set("code"), load_control_set()
    assert len(chat) >= 50 and len(code) >= 5 and len(both) == len(chat) + len(code)
    assert set(both.labels.tolist()) == {0}
    with pytest.raises(DatasetError):
        load_control_set("alpaca")


def test_jsonl_round_trip_and_validation(tmp_path) -> None:
    data = build_deception_pairs().subset(range(6))
    data.to_jsonl(tmp_path / "d.jsonl")
    back = PairSet.from_jsonl(
        tmp_path / "d.jsonl", name=data.name, positive="deceptive", negative="honest"
    )
    assert back == data and back.sha256 == data.sha256
    with pytest.raises(DatasetError, match="label"):
        LabelledExample.from_json(
            {
                "id": "x",
                "messages": [{"role": "assistant", "content": "a"}],
                "label": 2,
                "group": "g",
                "family": "f",
            }
        )
    with pytest.raises(DatasetError, match="assistant"):
        LabelledExample.from_json(
            {
                "id": "x",
                "messages": [{"role": "user", "content": "a"}],
                "label": 1,
                "group": "g",
                "family": "f",
            }
        )
    with pytest.raises(DatasetError, match="unknown pair set"):
        load_pair_set("nope")
