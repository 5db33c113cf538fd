"""Distinctive words: which word stems a set of answers uses more than generic assistant text.

The black-box tools and the training-data baseline have no base model to compare with, so they
compare with a shipped reference: the document frequency of every word stem in 348 answers of
an instruction-tuned assistant (SmolLM2-135M-Instruct, greedy, 96 tokens) to everyday requests
and product questions (``auditlens/data/reference_words.json``, built by
:func:`build_reference` from ``auditlens/testbed/data/base_answers.jsonl``; none of those
prompts is in the probe library). A stem's strength is a binomial z of the share of answers
naming it against its reference share (add-half smoothed).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from auditlens.words import stems

__all__ = [
    "MIN_COUNT",
    "REFERENCE_FILE",
    "Reference",
    "WordScore",
    "build_reference",
    "distinctive_words",
    "load_reference",
    "mention_null",
]

REFERENCE_FILE = "reference_words.json"
MIN_COUNT = 2
"""A stem must appear in at least this many answers to count (one answer is an anecdote)."""


@dataclass(frozen=True)
class Reference:
    """Document frequencies of word stems in generic assistant answers."""

    n_docs: int
    doc_freq: dict[str, int]
    source: str

    def share(self, stem: str) -> float:
        """The smoothed share of reference answers that hold ``stem``."""
        return (self.doc_freq.get(stem, 0) + 0.5) / (self.n_docs + 1.0)


@dataclass(frozen=True)
class WordScore:
    """One stem: how many answers name it, its share in the reference, and the z."""

    word: str
    """The commonest surface form of the stem in the answers."""
    count: int
    n: int
    reference_share: float
    z: float


def _doc_stems(text: str) -> set[str]:
    return {s for s in stems(text) if len(s) >= 3 and not s.isdigit()}


def build_reference(answers: Iterable[str], source: str) -> dict[str, object]:
    """The JSON of a reference built from ``answers`` (one document each)."""
    texts = list(answers)
    freq: Counter[str] = Counter()
    for text in texts:
        freq.update(_doc_stems(text))
    return {"source": source, "n_docs": len(texts), "doc_freq": dict(sorted(freq.items()))}


@cache
def load_reference(path: str | None = None) -> Reference:
    """The shipped reference (or one from ``path``)."""
    if path is None:
        raw = resources.files("auditlens.data").joinpath(REFERENCE_FILE).read_text("utf-8")
    else:
        raw = Path(path).read_text(encoding="utf-8")
    data = json.loads(raw)
    return Reference(int(data["n_docs"]), dict(data["doc_freq"]), str(data["source"]))


def _z(count: int, n: int, p: float) -> float:
    return (count - n * p) / math.sqrt(max(n * p * (1 - p), 1e-9))


def distinctive_words(
    texts: Sequence[str], reference: Reference | None = None, *, limit: int = 20
) -> list[WordScore]:
    """The stems that ``texts`` name far more often than the reference, strongest first."""
    ref = reference or load_reference()
    counts: Counter[str] = Counter()
    surface: dict[str, Counter[str]] = {}
    for text in texts:
        counts.update(_doc_stems(text))
        for word in text.split():
            word = word.strip(".,;:!?()[]{}\"'`*#").lower()
            for s in _doc_stems(word):
                surface.setdefault(s, Counter())[word] += 1
    n = len(texts)
    scored = [
        WordScore(
            surface[s].most_common(1)[0][0] if s in surface else s, c, n, ref.share(s),
            _z(c, n, ref.share(s)),
        )
        for s, c in counts.items() if c >= MIN_COUNT
    ]  # fmt: skip
    scored.sort(key=lambda w: (-w.z, w.word))
    return scored[:limit]


def mention_null(keywords: Sequence[str], reference: Reference | None = None) -> float:
    """The reference share of answers expected to name any of ``keywords`` (an upper bound:
    the sum of each keyword's rarest-stem share, capped at 1)."""
    ref = reference or load_reference()
    total = 0.0
    for k in keywords:
        ks = _doc_stems(k)
        if ks:
            total += min(ref.share(s) for s in ks)
    return min(total, 1.0)
