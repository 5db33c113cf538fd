"""What a method hands to the audit, the agent and the report: findings, sections, hypotheses.

Every method's ``evidence(result, ...)`` returns one :class:`Evidence`; an audit step adds
the small JSON ``data`` later steps read (:class:`auditlens.audit.StepOutput`).
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from .findings import Finding, Hypothesis
from .sections import Section

__all__ = ["Evidence"]


class Evidence(BaseModel):
    """Findings (statistics beside their null controls), report sections and hypotheses."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")

    findings: list[Finding] = Field(default_factory=list)
    sections: list[Section] = Field(default_factory=list)
    hypotheses: list[Hypothesis] = Field(default_factory=list)
    notices: list[str] = Field(default_factory=list)

    def __add__(self, other: Evidence) -> Evidence:
        return Evidence(
            findings=[*self.findings, *other.findings],
            sections=[*self.sections, *other.sections],
            hypotheses=[*self.hypotheses, *other.hypotheses],
            notices=[*self.notices, *other.notices],
        )

    @classmethod
    def combine(cls, parts: Iterable[Evidence]) -> Evidence:
        """All parts in order."""
        out = cls()
        for part in parts:
            out = out + part
        return out
