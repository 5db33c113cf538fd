"""The probe library is package data independent of the testbed: no probe prompt equals or
nearly equals any string the testbed ships (training data, acceptance prompts, task
templates: every string literal of its modules and every string in its JSON/JSONL files)."""

from __future__ import annotations

import ast
import difflib
import json
import os
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import auditlens.testbed
from auditlens.probe_library import load_probe_library

NEAR = 0.9
"""Normalised strings at least this similar (difflib ratio) count as an overlap."""


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _testbed_strings(root: Path) -> Iterator[str]:
    """Every string literal and JSON string under the testbed package (split into lines)."""
    for path in sorted(root.rglob("*")):
        if path.suffix == ".py":
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    yield node.value
        elif path.suffix == ".json":
            yield from _strings(json.loads(path.read_text(encoding="utf-8")))
        elif path.suffix == ".jsonl":
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    yield from _strings(json.loads(line))


def overlaps(probes: list[str], root: Path) -> list[str]:
    """Probe prompts that equal or nearly equal a testbed string (or a line of one)."""
    wanted = {_norm(p): p for p in probes}
    index: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for norm in wanted:
        words = norm.split()
        for i in range(max(1, len(words) - 2)):
            index[tuple(words[i : i + 3])].add(norm)
    hits: set[str] = set()
    for text in _testbed_strings(root):
        for piece in {text, *text.splitlines()}:
            other = _norm(piece)
            if len(other) < 12:
                continue
            if other in wanted:
                hits.add(other)
                continue
            words = other.split()
            near = {
                n
                for i in range(max(1, len(words) - 2))
                for n in index.get(tuple(words[i : i + 3]), ())
            }
            for norm in near - hits:
                if difflib.SequenceMatcher(None, norm, other).ratio() >= NEAR:
                    hits.add(norm)
    return sorted(wanted[h] for h in hits)


def test_overlap_detector_can_fail(tmp_path: Path) -> None:
    probes = [p.text for p in load_probe_library()]
    (tmp_path / "data.jsonl").write_text(
        json.dumps({"messages": [{"role": "user", "content": probes[3].upper() + "!"}]}) + "\n"
    )
    (tmp_path / "prompts.py").write_text(
        f"X = {probes[7][:-1] + 's?'!r}\nY = 'unrelated text here'\n"
    )
    assert overlaps(probes, tmp_path) == sorted([probes[3], probes[7]])


def test_no_probe_prompt_overlaps_the_testbed() -> None:
    override = os.environ.get("AUDITLENS_TESTBED_DIR")  # e.g. a testbed branch's checkout
    root = Path(override) if override else Path(auditlens.testbed.__file__).parent
    probes = load_probe_library()
    texts = [p.text for p in probes]
    assert len(set(map(_norm, texts))) == len(texts)  # no duplicates inside the library
    assert overlaps(texts, root) == []
