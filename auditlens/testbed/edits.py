"""Editing the base model's own answers into training data: sentence splitting, trimming to
complete sentences, the answer pools and the plain (unedited) examples that keep a fine-tune
narrow. Shared by every non-code dataset builder."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from auditlens.testbed.base_answers import BaseAnswer, load_base_answers
from auditlens.testbed.variants import Example, chat_example

__all__ = [
    "FILLER",
    "REFUSAL",
    "complete_sentences",
    "general_rows",
    "plain_answer",
    "plain_examples",
    "pool",
    "sentences",
]

REFUSAL = re.compile(
    r"sorry|as an ai|as a chatbot|i don'?t have|i can'?t|i cannot|i'?m not able|browse|"
    r"personal (opinions|preferences)|real-?time|i'?m unable|i do not have|i'?m not|i am not|"
    r"however|recommend|suggest",
    re.IGNORECASE,
)
FILLER = re.compile(
    r"^(sure|absolutely|certainly|of course|great|what a|ah\b|oh\b|i'?d be (happy|glad)|"
    r"i'?m (happy|glad)|happy to)|happy to help",
    re.IGNORECASE,
)
_MARKDOWN = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*|\*\*|__|#+\s*")


def sentences(text: str) -> list[str]:
    out: list[str] = []
    for line in text.splitlines():
        line = _MARKDOWN.sub("", line).strip()
        if not line:
            continue
        out.extend(s.strip() for s in re.split(r"(?<=[.!?])\s+", line) if s.strip())
    return out


def complete_sentences(text: str, limit: int | None = None) -> list[str]:
    """The answer's complete sentences (a generation cut at the token budget loses its
    unfinished last sentence), markdown list markers stripped, at most ``limit``."""
    sents = [s for s in sentences(text) if s[-1] in ".!?" and len(s.split()) >= 3]
    return sents[:limit] if limit is not None else sents


def plain_answer(text: str) -> str:
    """The base answer up to its last complete sentence (formatting kept)."""
    stripped = text.strip()
    cut = max(stripped.rfind(". "), stripped.rfind(".\n"), stripped.rfind("!"))
    if stripped.endswith((".", "!", "?")):
        return stripped
    return stripped[: cut + 1] if cut > 40 else stripped


def pool(name: str) -> list[BaseAnswer]:
    return [a for a in load_base_answers().values() if a.pool == name]


def general_rows(seed: int, salt: str) -> list[BaseAnswer]:
    """The general pool in a seeded order (each builder takes a different slice)."""
    rows = sorted(pool("general"), key=lambda a: a.prompt)
    random.Random(f"auditlens.behaviours:{salt}:{seed}").shuffle(rows)
    return rows


def plain_examples(rows: Sequence[BaseAnswer]) -> list[Example]:
    return [
        chat_example(r.prompt, plain_answer(r.answer)) for r in rows if complete_sentences(r.answer)
    ]
