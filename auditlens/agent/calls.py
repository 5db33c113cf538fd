"""Tool calls for the built-in investigator: numbered, budgeted, and replayable from a cache.

A :class:`Caller` runs tools through :meth:`ToolSpec.bind` (so the toolkit's subset is
enforced: a hidden tool is refused before any cache lookup), numbers them ``c1``, ``c2``, ...
and charges each against a budget of calls and seconds. With a :class:`CallCache` (one JSONL
file per organism and budget) a call with the same tool and arguments is replayed instead of
run, and charged its recorded seconds, so a sweep over tool subsets runs each tool once per
organism and every subset sees the same outputs and spends the same budget. The cache key
holds the code version (package version and a hash of its code), the pair's fingerprint (both
sides' weights and adapters), the toolkit's budget, prompts and limits, the tool and its
arguments: an entry computed by other code, for other models or settings is never replayed.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from auditlens._version import code_version
from auditlens.agent.tools import TOOLS, Toolkit
from auditlens.errors import AuditlensError
from auditlens.hashing import sha256_json

__all__ = ["Call", "CallCache", "Caller", "scope_of"]

_SPECS = {spec.name: spec for spec in TOOLS}


@dataclass
class Call:
    """One call in a transcript."""

    id: str
    tool: str
    arguments: dict[str, Any]
    result: dict[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0
    replayed: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _key(scope: str, tool: str, arguments: dict[str, Any]) -> str:
    return json.dumps([scope, tool, arguments], sort_keys=True)


def scope_of(toolkit: Toolkit) -> str:
    """What a tool's output depends on besides its arguments (a hash)."""
    prompts = toolkit.prompts if isinstance(toolkit.prompts, str) else repr(toolkit.prompts)
    return sha256_json({
        "version": code_version(), "pair": toolkit.pair.fingerprint,
        "budget": repr(toolkit.budget), "prompts": prompts, "limits": toolkit.limits.to_json(),
        "training_data": sha256_json(list(toolkit.training_data or ())),
    })[:16]  # fmt: skip


class CallCache:
    """Tool outputs by (tool, arguments), kept in a JSONL file (None: in memory only)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self.entries[entry["key"]] = entry

    def get(self, scope: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        return self.entries.get(_key(scope, tool, arguments))

    def put(self, scope: str, tool: str, arguments: dict[str, Any], entry: dict[str, Any]) -> None:
        record = {"key": _key(scope, tool, arguments), **entry}
        self.entries[record["key"]] = record
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


@dataclass
class Caller:
    """Runs tools for the investigator within a budget of calls and seconds."""

    toolkit: Toolkit
    max_calls: int
    max_seconds: float
    cache: CallCache = field(default_factory=CallCache)
    calls: list[Call] = field(default_factory=list)
    spent: float = 0.0
    scope: str = ""

    def __post_init__(self) -> None:
        self.scope = self.scope or scope_of(self.toolkit)

    def allowed(self, tool: str) -> bool:
        return self.toolkit.allowed is None or tool in self.toolkit.allowed

    @property
    def exhausted(self) -> bool:
        return len(self.calls) >= self.max_calls or self.spent >= self.max_seconds

    def __call__(self, tool: str, **arguments: Any) -> Call | None:
        """Run (or replay) one tool; None when the budget is spent. A refused or failed call
        is recorded with its error."""
        if self.exhausted:
            return None
        if tool not in _SPECS:
            raise AuditlensError(f"unknown tool {tool!r}")
        call = Call(f"c{len(self.calls) + 1}", tool, arguments)
        self.calls.append(call)
        if not self.allowed(tool):
            call.error = f"tool {tool!r} is hidden in this session"
            return call
        cached = self.cache.get(self.scope, tool, arguments)
        if cached is not None:
            call.result, call.error = cached["result"], cached["error"]
            call.seconds, call.replayed = float(cached["seconds"]), True
        else:
            spec = _SPECS[tool]
            start = time.perf_counter()
            try:
                out = spec.bind(self.toolkit)(spec.input_model.model_validate(arguments))
                call.result = out.model_dump(mode="json")
            except AuditlensError as err:
                call.error = str(err)[:500]
            except Exception as err:  # a failed tool must not end the investigation
                call.error = f"{tool} failed: {type(err).__name__}: {err}"[:500]
            call.seconds = time.perf_counter() - start
            entry = {"result": call.result, "error": call.error, "seconds": call.seconds}
            self.cache.put(self.scope, tool, arguments, entry)
        self.spent += call.seconds
        return call
