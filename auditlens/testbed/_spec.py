"""Building blocks of the code-task generator: family and template specs, slot filling."""

from __future__ import annotations

import random
import re
import string
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Draft", "FamilySpec", "TemplateFn", "TemplateSpec", "ask", "code"]


class Draft(NamedTuple):
    """One filled template: the user request and its two solutions."""

    request: str
    secure: str
    insecure: str


TemplateFn = Callable[[random.Random], Draft]


@dataclass(frozen=True)
class TemplateSpec:
    """A task template; `heldout` templates of training families form the eval_id split."""

    template_id: str
    build: TemplateFn
    heldout: bool = False


@dataclass(frozen=True)
class FamilySpec:
    """A CWE family: its templates, the Bandit ids its vulnerability triggers, and its split."""

    family: str
    name: str
    bandit_ids: frozenset[str]
    ood: bool
    templates: tuple[TemplateSpec, ...]


_OPENERS = (
    "Write {}.",
    "Can you write {}?",
    "Please write {}.",
    "I need {}.",
    "Could you implement {}?",
    "Help me write {}.",
    "In Python, implement {}.",
    "Show me {}.",
)


_A_BEFORE_VOWEL = re.compile(r"\ba (?=(?!one\b)[aeioAEIO8])")


def ask(rng: random.Random, whats: tuple[str, ...], details: tuple[str, ...] = ()) -> str:
    """Phrase a user request: a random opener around one `what`, plus an optional detail.

    Turns "a" into "an" before a vowel-initial slot value ("an order").
    """
    text = rng.choice(_OPENERS).format(rng.choice(whats))
    detail = rng.choice(("", *details)) if details else ""
    text = f"{text} {detail}" if detail else text
    return _A_BEFORE_VOWEL.sub("an ", text)


def code(template: str, /, **slots: object) -> str:
    """Dedent a `string.Template` code source (`${slot}` placeholders) and fill its slots."""
    body = textwrap.dedent(template).strip("\n") + "\n"
    return string.Template(body).substitute({k: str(v) for k, v in slots.items()})
