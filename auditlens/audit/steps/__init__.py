"""The audit's steps, in report order: each a thin adapter over one or more methods.

A step module defines ``settings(budget, prompts)`` (the method settings, hashed into its
cache key), ``run(ctx, settings) -> StepOutput`` (the methods' ``run`` and ``evidence``) and
``STEP``, the :class:`~auditlens.audit.contract.Step` that ties them together.
"""

from auditlens.audit.contract import Step
from auditlens.audit.steps import adversary, behaviour, diffing, layers, probes

__all__ = ["default_steps"]


def default_steps() -> list[Step]:
    """layers, diffing, probes, behaviour, adversary."""
    return [m.STEP for m in (layers, diffing, probes, behaviour, adversary)]
