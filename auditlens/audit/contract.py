"""The audit's contract: the budget, the context a step runs in, what a step returns, a step.

A step is a thin adapter: it builds its method settings from the :class:`Budget` (and the
prompts), calls the methods' ``run`` and ``evidence``, and returns a :class:`StepOutput`.
Its artifacts go under ``ctx.artifacts`` (cited in findings as ``ctx.where/...``), a folder
keyed by everything that determines the step's result (see :mod:`auditlens.audit.cache`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from auditlens.audit.cache import ArtifactCache
from auditlens.datasets import PromptSet, load_prompts
from auditlens.errors import AuditlensError
from auditlens.models import ModelPair
from auditlens.reports.evidence import Evidence

__all__ = ["BUDGETS", "AuditContext", "Budget", "BudgetName", "Step", "StepOutput"]

BudgetName = Literal["fast", "standard", "thorough"]


@dataclass(frozen=True)
class Budget:
    """How much work an audit may do: tokens harvested, training steps and generations."""

    name: str
    n_prompts: int
    """Generic prompts scanned for activation differences, KL, ADL and the crosscoder."""
    max_length: int
    """Tokens per prompt (longer prompts are truncated)."""
    batch_size: int
    """Prompts per forward pass."""
    n_code_tasks: int = 32
    """Held-out testbed code tasks (half in-distribution families, half held-out families)."""
    n_questions: int = 8
    """Free-form (emergent-misalignment) questions."""
    max_new_tokens: int = 96
    """Tokens per generation."""
    crosscoder_steps: int = 300
    """Crosscoder training steps at the most-changed site."""
    crosscoder_latents: int = 1024
    """Crosscoder dictionary size."""
    melbo_vectors: int = 2
    """MELBO steering vectors trained (and as many matched random controls)."""
    melbo_steps: int = 20
    """MELBO optimisation steps."""
    adversary_prompts: int = 8
    """Code tasks the adversary's perturbations are scored on."""
    probe_per_domain: int = 2
    """Probe-library prompts per domain that both models answer for the discovery
    instruments (16 domains)."""
    probe_new_tokens: int = 48
    """Tokens per probe answer."""
    check_prompts: int = 8
    """Held-out prompts per behaviour check of a hypothesis."""

    def __post_init__(self) -> None:
        values = [v for v in asdict(self).values() if isinstance(v, int)]
        if min(values) < 1:
            raise AuditlensError(f"budget {self.name!r} has a non-positive setting")


BUDGETS: dict[str, Budget] = {
    "fast": Budget("fast", n_prompts=32, max_length=128, batch_size=8),
    "standard": Budget(
        "standard", n_prompts=64, max_length=256, batch_size=8, n_code_tasks=64,
        n_questions=16, max_new_tokens=128, crosscoder_steps=1000, crosscoder_latents=2048,
        melbo_vectors=4, melbo_steps=40, adversary_prompts=16, probe_per_domain=4,
        probe_new_tokens=64, check_prompts=12,
    ),
    "thorough": Budget(
        "thorough", n_prompts=96, max_length=512, batch_size=8, n_code_tasks=128,
        n_questions=32, max_new_tokens=160, crosscoder_steps=3000, crosscoder_latents=4096,
        melbo_vectors=8, melbo_steps=60, adversary_prompts=32, probe_per_domain=8,
        probe_new_tokens=96, check_prompts=8,
    ),
}  # fmt: skip


def resolve_budget(budget: str | Budget) -> Budget:
    """A budget by name, or the budget itself."""
    if isinstance(budget, Budget):
        return budget
    if budget not in BUDGETS:
        raise AuditlensError(f"unknown budget {budget!r}; choose {', '.join(BUDGETS)}")
    return BUDGETS[budget]


class StepOutput(Evidence):
    """What one step contributes: its evidence and small JSON data for later steps."""

    data: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, evidence: Evidence, data: dict[str, Any] | None = None) -> StepOutput:
        parts = {k: getattr(evidence, k) for k in ("findings", "sections", "hypotheses", "notices")}
        return cls(**parts, data=data or {})


@dataclass
class AuditContext:
    """What steps share: the pair, the output folder, the budget and earlier outputs."""

    pair: ModelPair
    out_dir: Path
    budget: Budget
    prompts: str | Sequence[Any] | PromptSet
    progress: bool = True
    outputs: dict[str, StepOutput] = field(default_factory=dict)
    cache: ArtifactCache = field(default_factory=ArtifactCache)
    """Expensive artifacts shared with other audits and the agent tools."""
    artifacts: Path = Path()
    """The running step's artifact folder (set by the pipeline)."""
    where: str = ""
    """``artifacts`` relative to ``out_dir``, as findings cite it."""
    keys: dict[str, str] = field(default_factory=dict)
    """The cache key of each step run so far (a later step's key holds those it needs)."""

    def prompt_set(self) -> PromptSet:
        """The generic prompts, the first ``budget.n_prompts`` of them."""
        return load_prompts(self.prompts).head(self.budget.n_prompts)

    def data(self, step: str, key: str, default: Any = None) -> Any:
        """A value an earlier step left in its ``data``."""
        output = self.outputs.get(step)
        return output.data.get(key, default) if output is not None else default


@dataclass(frozen=True)
class Step:
    """One step of the audit: a name, its settings (from the budget) and its adapter."""

    name: str
    settings: Callable[[Budget, PromptSet], Any]
    """The method settings this step will use (hashed into its cache key)."""
    run: Callable[[AuditContext, Any], StepOutput]
    """``run(ctx, settings)``: call the methods' ``run`` and ``evidence``."""
    needs: tuple[str, ...] = ()
    """Earlier steps whose output this one reads (their keys enter its key)."""
    uses_prompts: bool = False
    """Whether the generic prompts enter the result (their contents enter the key)."""
    order: float = 100.0
    """Position in the audit and the report (lower first)."""
