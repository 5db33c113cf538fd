"""The audit's steps: each a thin adapter over one or more methods, found by discovery.

A step module defines ``settings(budget, prompts)`` (the method settings, hashed into its
cache key), ``run(ctx, settings) -> StepOutput`` (the methods' ``run`` and ``evidence``) and
``STEP``, the :class:`~auditlens.audit.contract.Step` that ties them together. Every module of
this package with a ``STEP`` is an audit step, in the order of ``STEP.order``: adding a step
is adding its module.
"""

from __future__ import annotations

import importlib
import pkgutil

from auditlens.audit.contract import Step

__all__ = ["default_steps"]


def default_steps() -> list[Step]:
    """Every step of this package, by ``order``: layers, diffing, probes, behaviour, adversary."""
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        step = getattr(importlib.import_module(f"{__name__}.{info.name}"), "STEP", None)
        if isinstance(step, Step):
            found.append(step)
    return sorted(found, key=lambda step: step.order)
