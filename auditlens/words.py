"""Words in text: a small stemmer and keyword matching, shared by the behaviour checks (does an
answer mention a hypothesis's keywords?) and the discovery score (does a hypothesis name an
organism's ground-truth keywords?)."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["mentions", "stem", "stems"]

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_SUFFIXES: tuple[str, ...] = ("ations", "ation", "ities", "ity", "ings", "ing", "ies", "ied")
_SUFFIXES += ("ers", "er", "ed", "es", "ly", "e", "s")


def stem(word: str) -> str:
    """Lower-case ``word`` and strip one common English suffix (keeping at least 3 letters):
    ``promote``, ``promotes``, ``promoted``, ``promoting`` -> ``promot``; ``secure``,
    ``security`` -> ``secur``."""
    w = word.lower()
    for suffix in _SUFFIXES:
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            base = w[: -len(suffix)]
            return base + "y" if suffix in ("ies", "ied") else base
    return w


def stems(text: str) -> set[str]:
    """The stems of every word in ``text`` (identifiers split at ``_``, ``=`` and dots)."""
    return {stem(m.group()) for m in _WORD.finditer(text)}


def mentions(text: str, keywords: Iterable[str]) -> list[str]:
    """The keywords (by stem; a multi-word keyword needs all its words) that ``text`` names."""
    found = stems(text)
    return [k for k in keywords if (ks := stems(k)) and ks <= found]
