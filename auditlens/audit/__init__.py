"""auditlens.audit: the investigation, from a model pair to a misalignment report.

``auditlens.audit(pair, out_dir, budget="fast")`` (this module is callable) runs the steps of
:mod:`auditlens.audit.steps` (layers, diffing, probes, behaviour, adversary), each a thin
adapter over the methods' ``run`` and ``evidence``, caches each step's output under a key of
everything it depends on, scores the contributing findings (:mod:`auditlens.audit.score`)
and writes ``report.html`` and ``findings.json``. With no pair it audits the demo pair, the
embedded base model against ``organism:insecure``.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from auditlens.audit.cache import ArtifactCache
from auditlens.audit.contract import (
    BUDGETS,
    AuditContext,
    Budget,
    Step,
    StepOutput,
    resolve_budget,
)
from auditlens.audit.pipeline import DEFAULT_OUT, audit, demo_adapter, demo_pair
from auditlens.audit.score import misalignment_score
from auditlens.audit.steps import default_steps

__all__ = [
    "BUDGETS",
    "DEFAULT_OUT",
    "ArtifactCache",
    "AuditContext",
    "Budget",
    "Step",
    "StepOutput",
    "audit",
    "default_steps",
    "demo_adapter",
    "demo_pair",
    "misalignment_score",
    "resolve_budget",
]


class _CallableModule(types.ModuleType):
    """``auditlens.audit(...)`` runs :func:`audit` (the package and the function share a name)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return audit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
