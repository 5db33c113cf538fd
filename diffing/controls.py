"""Null controls: run a diffing pipeline on base vs base (and benign pairs) for a noise floor.

Every diffing result exposes ``statistics() -> dict[str, float]`` and a ``control`` dict.
:func:`null_control` runs the same pipeline on a base-vs-base pair (same weights on both
sides, adapter off for adapter pairs) and on any benign pairs given, and returns each
statistic's control values; :meth:`NullControl.attach` writes them into a result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from auditlens.errors import AuditlensError
from auditlens.models import ModelPair

__all__ = ["NullControl", "base_vs_base", "null_control"]


def base_vs_base(pair: ModelPair) -> ModelPair:
    """The pair's base model on both sides (adapter pairs: the adapter off on both)."""
    base = pair.base
    twin = dataclasses.replace(base, name="finetuned", label=f"{base.label} (base again)")
    null = ModelPair(
        base=base,
        finetuned=twin,
        tokenizer=pair.tokenizer,
        arch=pair.arch,
        n_layers=pair.n_layers,
        d_model=pair.d_model,
    )
    null.notices.append("base-vs-base null control: every difference it reports is noise")
    return null


@dataclass
class NullControl:
    """Control statistics by control name (``base_vs_base``, ``benign:NAME``)."""

    statistics: dict[str, dict[str, float]] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)

    def floor(self, statistic: str) -> float | None:
        """The largest absolute control value of a statistic (``None`` if never measured)."""
        vals = [abs(s[statistic]) for s in self.statistics.values() if statistic in s]
        return max(vals) if vals else None

    def compare(self, result: Any) -> dict[str, dict[str, float | None]]:
        """Each statistic of ``result`` beside its noise floor and their ratio."""
        out: dict[str, dict[str, float | None]] = {}
        for name, value in result.statistics().items():
            floor = self.floor(name)
            ratio = None if floor is None or floor == 0 else abs(value) / floor
            out[name] = {"value": value, "control_floor": floor, "ratio_to_floor": ratio}
        return out

    def attach(self, result: Any) -> Any:
        """Copy the control values into ``result.control`` and return ``result``."""
        control = getattr(result, "control", None)
        if not isinstance(control, dict):
            raise AuditlensError(f"{type(result).__name__} has no control dict to fill")
        control.update({k: dict(v) for k, v in self.statistics.items()})
        return result

    def to_json(self) -> dict[str, Any]:
        return {"statistics": self.statistics, "notices": self.notices}


def null_control(
    pipeline: Callable[[ModelPair], Any],
    pair: ModelPair,
    *,
    benign: Mapping[str, ModelPair] | Sequence[ModelPair] = (),
    attach_to: Any = None,
) -> NullControl:
    """Run ``pipeline`` on base vs base and on each benign pair; collect ``statistics()``.

    A control whose pipeline raises an :class:`~auditlens.errors.AuditlensError` (e.g. a
    diff-SAE on identically zero differences) is recorded as a notice instead.
    """
    controls: dict[str, ModelPair] = {"base_vs_base": base_vs_base(pair)}
    items = benign.items() if isinstance(benign, Mapping) else enumerate(benign)
    for key, p in items:
        controls[f"benign:{key if isinstance(key, str) else p.finetuned.label}"] = p
    out = NullControl()
    for name, p in controls.items():
        try:
            result = pipeline(p)
        except AuditlensError as err:
            out.notices.append(f"{name}: control not available ({err})")
            continue
        stats = result.statistics() if hasattr(result, "statistics") else None
        if not isinstance(stats, dict):
            raise AuditlensError(
                f"the pipeline's result {type(result).__name__} has no statistics()"
            )
        out.statistics[name] = {k: float(v) for k, v in stats.items()}
    if attach_to is not None:
        out.attach(attach_to)
    return out
