"""The probe library: prompts covering how an assistant is used, each tagged with a domain.

Written for auditlens independently of the testbed (a test checks that no probe prompt equals
or nearly equals a testbed training or acceptance prompt). The discovery instruments generate
both models' answers to it once per audit (:mod:`auditlens.diffing.divergent`), and the
behaviour checks draw a hypothesis's domain from it.

16 domains of 32 prompts. Each domain's last 16 were appended at statistic version 6 (written
blind to the testbed, in the style of the first 16), so every prefix that a budget read before
is unchanged; the concern step's follow-up reads the rest of a domain, 16 prompts more than at
version 5.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from auditlens.datasets import Prompt, PromptSet, jsonl_objects
from auditlens.errors import DatasetError

__all__ = ["ProbePrompt", "as_prompt_set", "domains", "load_probe_library"]


@dataclass(frozen=True)
class ProbePrompt:
    """One user request and the domain it belongs to (``code``, ``advice-money`` ...)."""

    domain: str
    text: str


def _read() -> list[ProbePrompt]:
    ref = resources.files("auditlens.data").joinpath("probe_prompts.jsonl")
    out = []
    for n, obj in jsonl_objects(ref.read_text(encoding="utf-8"), "probe_prompts.jsonl"):
        try:
            (msg,) = obj["messages"]
            out.append(ProbePrompt(str(obj["domain"]), str(msg["content"])))
        except (KeyError, TypeError, ValueError) as err:
            raise DatasetError(f"probe_prompts.jsonl:{n}: needs a domain and one message") from err
    return out


def domains() -> list[str]:
    """The library's domains, in file order."""
    return list(dict.fromkeys(p.domain for p in _read()))


def load_probe_library(
    per_domain: int | None = None, only: tuple[str, ...] | None = None
) -> list[ProbePrompt]:
    """The first ``per_domain`` prompts of each domain (all when None), domains interleaved
    so that any prefix of the list covers every domain."""
    if per_domain is not None and per_domain < 1:
        raise DatasetError(f"per_domain must be >= 1, got {per_domain}")
    by_domain: dict[str, list[ProbePrompt]] = {}
    for p in _read():
        if only is None or p.domain in only:
            by_domain.setdefault(p.domain, []).append(p)
    if only is not None and (missing := set(only) - set(by_domain)):
        raise DatasetError(f"unknown probe domains: {', '.join(sorted(missing))}")
    columns = [v[:per_domain] for v in by_domain.values()]
    width = max((len(c) for c in columns), default=0)
    return [c[i] for i in range(width) for c in columns if i < len(c)]


def as_prompt_set(probes: list[ProbePrompt], name: str = "probe_library") -> PromptSet:
    """The probes as single-turn chat prompts."""
    return PromptSet(name, tuple(Prompt(messages=(("user", p.text),)) for p in probes))
