"""What every tool family shares: the limits, the errors, the tool spec and the toolkit's state.

A :class:`ToolkitBase` holds the loaded pair, the workspace, the limits, and the audit budget,
prompts and artifact cache whose settings the tools reuse: the crosscoder, ADL and MELBO
artifacts come from :mod:`auditlens.audit.artifacts` with the audit steps' settings, so a
latent id in a report is the same latent here. Bad input, an exceeded limit or a path outside
the workspace raises an :class:`~auditlens.errors.AuditlensError` subclass, which the MCP
server and the Inspect adapters turn into a tool error.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from auditlens.agent import schemas as s
from auditlens.agent.workspace import Workspace
from auditlens.audit.cache import ArtifactCache, link_tree
from auditlens.audit.contract import Budget, resolve_budget
from auditlens.datasets import Prompt, PromptSet, load_prompts
from auditlens.diffing import scan
from auditlens.errors import AuditlensError
from auditlens.judges.code import bandit_labels, insecure_rate
from auditlens.models import ModelPair, ModelSide

__all__ = [
    "LimitError",
    "Limits",
    "ToolHiddenError",
    "ToolInputError",
    "ToolSpec",
    "ToolkitBase",
    "finite",
    "rate_stats",
    "user_text",
]


class ToolInputError(AuditlensError):
    """An argument the tool cannot use (unknown site, unknown vector id, ...)."""


class ToolHiddenError(ToolInputError):
    """A call to a tool outside the session's tool subset."""


class LimitError(AuditlensError):
    """A request beyond the server's configured limits."""


@dataclass(frozen=True)
class Limits:
    """Budgets for every tool call; exceeding one is a tool error, never a crash."""

    max_new_tokens: int = 128
    """Most tokens one generation may produce."""
    max_prompts: int = 8
    """Most prompts per call (compare_models, steer_generate, melbo_search, fuzz)."""
    max_prompt_chars: int = 4000
    """Longest prompt, system prompt, prefill or text, in characters."""
    max_texts: int = 32
    """Most texts per probe_score call."""
    page_size: int = 50
    """Most rows per page of a ranking (top_divergent_tokens, top_diff_latents)."""
    scan_prompts: int = 32
    """Most prompts diff_overview / top_divergent_tokens may scan."""
    max_length: int = 128
    """Tokens kept per prompt in scans and MELBO."""
    batch_size: int = 8
    """Prompts per forward pass."""
    kl_top_k: int = 200
    """Highest-KL positions kept for paging."""
    max_contexts: int = 20
    """Most contexts latent_details returns."""
    max_steer_coeff: float = 32.0
    """Largest |coeff| steer_generate accepts."""
    melbo_max_vectors: int = 8
    """Most MELBO vectors per search."""
    melbo_max_steps: int = 50
    """Most MELBO optimiser steps per search."""
    max_stored_vectors: int = 64
    """Most MELBO vectors kept in the workspace over the session."""
    fuzz_max_seeds: int = 4
    """Most noise seeds per fuzz call."""
    fuzz_max_sigma: float = 4.0
    """Largest relative noise σ."""
    audit_budgets: tuple[str, ...] = ("fast",)
    """Audit budgets run_audit may use."""

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or name == "audit_budgets":
                continue
            if isinstance(value, float):
                if not (math.isfinite(value) and value > 0):
                    raise AuditlensError(f"limit {name} must be a positive number, got {value!r}")
            elif not isinstance(value, int) or value < 1:
                raise AuditlensError(f"limit {name} must be an integer >= 1, got {value!r}")
        unknown = set(self.audit_budgets) - {"fast", "standard", "thorough"}
        if unknown:
            raise AuditlensError(f"unknown audit budgets in limits: {sorted(unknown)}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def cap(name: str, value: float, limit: float) -> None:
    """Refuse ``value`` above ``limit``."""
    if value > limit:
        raise LimitError(f"{name}={value} exceeds the server limit of {limit}")


def user_text(prompt: Prompt) -> str:
    """The last user turn of a prompt (or its text)."""
    if prompt.messages is None:
        return prompt.text or ""
    users = [c for r, c in prompt.messages if r == "user"]
    return users[-1] if users else prompt.messages[-1][1]


def rate_stats(texts: Sequence[str]) -> s.RateStats:
    """Bandit's insecure-code rate of texts (:func:`auditlens.judges.insecure_rate`)."""
    rate = insecure_rate(bandit_labels(texts))
    if rate.n_insecure + rate.n_secure == 0:
        return s.RateStats(
            n_insecure=0,
            n_secure=0,
            n_unparseable=rate.n_unparseable,
            rate=None,
            ci_low=None,
            ci_high=None,
        )
    return s.RateStats(
        n_insecure=rate.n_insecure,
        n_secure=rate.n_secure,
        n_unparseable=rate.n_unparseable,
        rate=rate.rate,
        ci_low=rate.ci_low,
        ci_high=rate.ci_high,
    )


def finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass(frozen=True)
class ToolSpec:
    """One agent tool: its name, input and output models, and the Toolkit method it calls."""

    name: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    method: str
    description: str

    def bind(self, toolkit: Any) -> Callable[[Any], BaseModel]:
        """The toolkit method behind this tool: refused when the session's subset hides the
        tool, and numbered (``c1``, ``c2``, ...) in ``toolkit.calls`` when it runs."""
        fn: Callable[[Any], BaseModel] = getattr(toolkit, self.method)
        name = self.name

        def call(args: Any) -> BaseModel:
            toolkit.check_allowed(name)
            toolkit.calls.append({"id": f"c{len(toolkit.calls) + 1}", "tool": name})
            return fn(args)

        return call


@dataclass
class ToolkitBase:
    """A loaded model pair, a workspace, limits and the audit settings the tools share."""

    pair: ModelPair
    workspace: Workspace
    limits: Limits = field(default_factory=Limits)
    budget: Budget = field(default_factory=lambda: resolve_budget("fast"))
    """The audit budget whose method settings the shared artifacts use."""
    prompts: str | Sequence[Any] = "generic_chat"
    """The audit's generic prompts (the crosscoder's and the ADL's)."""
    cache: ArtifactCache = field(default_factory=ArtifactCache)
    allowed: frozenset[str] | None = None
    """The tools this session may call (None: all); the others are refused."""
    training_data: tuple[tuple[str, str], ...] | None = None
    """(user, assistant) turns of the fine-tuning data, for the training-data baseline."""
    calls: list[dict[str, str]] = field(default_factory=list)
    """The session's tool calls in order: ``{"id": "c1", "tool": ...}``."""
    answer: Any = None
    """The game answer submitted with ``submit_answer``, if any."""
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _memo: dict[Any, Any] = field(default_factory=dict, repr=False)

    def check_allowed(self, name: str) -> None:
        """Refuse a tool outside this session's subset (``submit_answer`` is always open)."""
        if self.allowed is not None and name not in self.allowed and name != "submit_answer":
            raise ToolHiddenError(
                f"tool {name!r} is hidden in this session; available: "
                + ", ".join(sorted(self.allowed))
            )

    # ---- arguments -----------------------------------------------------------------------
    def _side(self, name: str) -> ModelSide:
        if name == "base":
            return self.pair.base
        if name == "finetuned":
            return self.pair.finetuned
        raise ToolInputError(f"unknown side {name!r}; choose base or finetuned")

    def _site_any(self, name: str | None) -> str | None:
        return None if name is None else self.pair.sites([name])[0].name

    def _within(self, args: Any, limits: Mapping[str, float]) -> Any:
        """``args`` with each field checked against its limit.

        A value above its limit is a :class:`LimitError`, except the field's default, which is
        lowered to the limit (so a server with small limits works with default arguments).
        """
        update: dict[str, Any] = {}
        for name, limit in limits.items():
            value = getattr(args, name)
            default = type(args).model_fields[name].get_default(call_default_factory=True)
            size = len(value) if isinstance(value, list) else value
            if size <= limit:
                continue
            if value != default:
                shown = (
                    f"{len(value)} items in {name}"
                    if isinstance(value, list)
                    else f"{name}={value}"
                )
                raise LimitError(f"{shown} exceeds the server limit of {limit}")
            update[name] = value[: int(limit)] if isinstance(value, list) else type(value)(limit)
        return args.model_copy(update=update) if update else args

    def _text(self, what: str, value: str | None) -> None:
        if value is not None:
            cap(f"len({what})", len(value), self.limits.max_prompt_chars)

    def _gen_opts(self, max_new_tokens: int) -> None:
        cap("max_new_tokens", max_new_tokens, self.limits.max_new_tokens)

    def _prompt_set(
        self,
        prompts: Sequence[str],
        prompts_file: str | None = None,
        *,
        system: str | None = None,
        default: str | None = None,
        default_n: int = 4,
    ) -> PromptSet:
        if prompts and prompts_file:
            raise ToolInputError("give prompts or prompts_file, not both")
        if prompts_file:
            prompt_set = load_prompts(self.workspace.resolve(prompts_file, must_exist=True))
        elif prompts:
            for p in prompts:
                self._text("prompt", p)
            head = (("system", system),) if system else ()
            prompt_set = PromptSet(
                "agent", tuple(Prompt(messages=(*head, ("user", p))) for p in prompts)
            )
        elif default is not None:
            prompt_set = load_prompts(default).head(default_n)
        else:
            raise ToolInputError("no prompts given")
        cap("number of prompts", len(prompt_set), self.limits.max_prompts)
        for item in prompt_set.prompts:
            for _, content in item.messages or (("text", item.text or ""),):
                self._text("prompt", content)
        return prompt_set

    # ---- shared state --------------------------------------------------------------------
    def _scan(self, source: str, n_prompts: int) -> scan.ScanResult:
        """The per-layer scan of ``n_prompts`` of a built-in set (kept for the session)."""
        cap("n_prompts", n_prompts, self.limits.scan_prompts)
        key = ("scan", source, n_prompts)
        if key not in self._memo:
            prompts = load_prompts(source).head(n_prompts)
            settings = scan.ScanSettings(
                batch_size=self.limits.batch_size,
                max_length=self.limits.max_length,
                top_k=self.limits.kl_top_k,
            )
            self._memo[key] = scan.run(self.pair, prompts, settings, progress=False)
        result: scan.ScanResult = self._memo[key]
        return result

    def _audit_prompts(self) -> PromptSet:
        """The audit's generic prompts (``budget.n_prompts`` of them)."""
        return load_prompts(self.prompts).head(self.budget.n_prompts)

    def _null_note(self) -> str:
        if self.pair.identical:
            return "This pair IS the null control (base vs base): every difference is noise."
        return ""

    def _link(self, folder: Path, *parts: str) -> str:
        """Hard-link a cached artifact into the workspace; its workspace-relative path."""
        target = self.workspace.subdir(*parts)
        link_tree(folder, target)
        return self.workspace.relative(target)
