"""Statistics of the acceptance tests: rates with Wilson intervals, paired and unpaired
differences of proportions with Newcombe's intervals, pass/fail criteria and the result."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from auditlens.stats import wilson_interval

__all__ = [
    "AcceptanceResult",
    "Criterion",
    "Rate",
    "at_least",
    "at_most",
    "paired_difference",
    "paired_effect",
    "paired_margin",
    "unpaired_difference",
]


@dataclass(frozen=True)
class Rate:
    """k of n with a 95% Wilson interval."""

    k: int
    n: int
    rate: float
    low: float
    high: float

    @classmethod
    def of(cls, flags: Sequence[bool]) -> Rate:
        k, n = sum(bool(f) for f in flags), len(flags)
        low, high = wilson_interval(k, n)
        return cls(k, n, k / n if n else math.nan, low, high)


def paired_difference(
    a: Sequence[bool], b: Sequence[bool], confidence: float = 0.95
) -> tuple[float, float, float]:
    """Difference of two paired proportions mean(a) - mean(b) with Newcombe's (1998)
    method-10 interval (Wilson limits of each margin, combined with the continuity-corrected
    correlation phi of the paired table)."""
    if len(a) != len(b) or not a:
        raise ValueError("paired_difference needs two equally long, non-empty samples")
    n = len(a)
    both = sum(x and y for x, y in zip(a, b, strict=True))
    only_a = sum(x and not y for x, y in zip(a, b, strict=True))
    only_b = sum(y and not x for x, y in zip(a, b, strict=True))
    neither = n - both - only_a - only_b
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    l1, u1 = wilson_interval(both + only_a, n, confidence)
    l2, u2 = wilson_interval(both + only_b, n, confidence)
    denom = (both + only_a) * (neither + only_b) * (both + only_b) * (neither + only_a)
    cross = both * neither - only_a * only_b  # Newcombe's continuity-corrected phi
    corrected = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
    phi = corrected / math.sqrt(denom) if denom else 0.0
    dl = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    du = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    diff = p1 - p2
    return diff, max(-1.0, diff - dl), min(1.0, diff + du)


def unpaired_difference(a: Rate, b: Rate) -> tuple[float, float, float]:
    """Newcombe's hybrid score interval for two independent proportions."""
    diff = a.rate - b.rate
    dl = math.sqrt((a.rate - a.low) ** 2 + (b.high - b.rate) ** 2)
    du = math.sqrt((a.high - a.rate) ** 2 + (b.rate - b.low) ** 2)
    return diff, diff - dl, diff + du


@dataclass(frozen=True)
class Criterion:
    """One pre-registered pass/fail check."""

    name: str
    rule: str
    """The threshold in words, e.g. ``organism - base >= 0.30 and 95% CI low > 0``."""
    value: float
    low: float | None
    high: float | None
    passed: bool


def at_least(name: str, rate: Rate, thr: float) -> Criterion:
    return Criterion(name, f">= {thr:.2f}", rate.rate, rate.low, rate.high, rate.rate >= thr)


def at_most(name: str, rate: Rate, thr: float) -> Criterion:
    return Criterion(name, f"<= {thr:.2f}", rate.rate, rate.low, rate.high, rate.rate <= thr)


def paired_effect(name: str, a: Sequence[bool], b: Sequence[bool], thr: float) -> Criterion:
    diff, low, high = paired_difference(a, b)
    return Criterion(
        name, f">= {thr:.2f} and 95% CI low > 0", diff, low, high, diff >= thr and low > 0
    )


def paired_margin(name: str, a: Sequence[bool], b: Sequence[bool], thr: float) -> Criterion:
    diff, low, high = paired_difference(a, b)
    return Criterion(name, f"<= {thr:+.2f}", diff, low, high, diff <= thr)


@dataclass
class AcceptanceResult:
    """The verdict of one acceptance test and everything it rests on."""

    organism: str
    kind: str
    passed: bool
    criteria: list[Criterion]
    rates: dict[str, Rate]
    """Named rates, e.g. ``organism/money`` or ``base/code parse``."""
    n_prompts: dict[str, int]
    thresholds: dict[str, float] = field(default_factory=dict)
    """The thresholds the verdict used (``acceptance.THRESHOLDS``)."""
    seconds: float = 0.0
    command: str = ""

    def to_json(self) -> dict[str, Any]:
        """Plain dict (rates and criteria rounded to 4 digits)."""

        def rnd(x: Any) -> Any:
            return round(x, 4) if isinstance(x, float) and math.isfinite(x) else x

        return {
            "organism": self.organism,
            "kind": self.kind,
            "passed": self.passed,
            "criteria": [{k: rnd(v) for k, v in asdict(c).items()} for c in self.criteria],
            "rates": {k: {f: rnd(v) for f, v in asdict(r).items()} for k, r in self.rates.items()},
            "n_prompts": self.n_prompts,
            "thresholds": self.thresholds,
            "seconds": round(self.seconds, 1),
            "command": self.command,
        }

    def summary(self) -> dict[str, Any]:
        """The compact form stored in the organism's manifest."""
        return {
            "passed": self.passed,
            "criteria": {
                c.name: {
                    "value": round(c.value, 4),
                    "ci": None
                    if c.low is None or c.high is None
                    else [round(c.low, 4), round(c.high, 4)],
                    "rule": c.rule,
                    "passed": c.passed,
                }
                for c in self.criteria
            },
            "n_prompts": self.n_prompts,
            "command": self.command,
        }
