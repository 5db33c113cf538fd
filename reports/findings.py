"""The versioned findings schema: one evidence item per method result, plus audit metadata.

Versions are ``MAJOR.MINOR``. A minor bump only adds optional fields, so a reader accepts
any file with its own major version and a minor version no newer than its own.
Non-finite floats (NaN, ±inf) are written as the JSON strings ``"NaN"``, ``"Infinity"``
and ``"-Infinity"`` so the file stays standard JSON and still round-trips.
"""

from __future__ import annotations

import math
import os
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from auditlens.errors import AuditlensError

from ._io import read_json_object, validation_message, write_text_atomic

__all__ = [
    "SCHEMA_VERSION",
    "AuditFindings",
    "Confirmation",
    "Finding",
    "Hypothesis",
    "ModelInfo",
    "check_version",
    "collect_versions",
]

SCHEMA_VERSION = "1.3"
"""1.1 added ``Finding.refs`` and ``AuditFindings.hypotheses`` (both optional); 1.2 added
``Hypothesis.domain`` and ``Confirmation.summary`` (optional); 1.3 added ``Hypothesis.feature``
and ``Hypothesis.trigger`` (optional)."""

_VERSIONED_DISTRIBUTIONS = {
    "torch": "torch",
    "transformers": "transformers",
    "nnsight": "nnsight",
    "transformer_lens": "transformer-lens",
    "sae_lens": "sae-lens",
    "auditlens": "auditlens",
}


class _Schema(BaseModel):
    """Strict base: unknown fields are errors, NaN/inf serialise as JSON strings."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings", validate_assignment=True)


class Finding(_Schema):
    """One piece of evidence: a statistic measured by one method, beside its null control.

    ``effect_size`` is method-defined but always signed so that larger means "further from
    the null": usually ``(value - control) / spread of the control distribution`` (a z-score).
    The method's docstring says which; the report shows it as given.
    """

    id: str = Field(min_length=1)
    family: Literal["behaviour", "diffing", "probes", "adversary"]
    method: str = Field(min_length=1)
    site: str | None = None
    statistic: str = Field(min_length=1)
    value: float
    control: float | None = None
    control_kind: str | None = None
    effect_size: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    summary: str
    artifacts: list[str] = Field(default_factory=list)
    refs: list[str] = Field(default_factory=list)
    """Handles of what the finding is about, in the agent tools' vector syntax (e.g.
    ``latent:17`` for crosscoder latent 17 at ``site``, ``adl:29``): the same object in the
    report, in ``findings.json`` and in the MCP tools (``latent_details``, ``steer_generate``)."""
    contributes: bool = False
    weight: float | None = None

    @field_validator("artifacts")
    @classmethod
    def _relative_artifacts(cls, paths: list[str]) -> list[str]:
        for path in paths:
            parts = PurePosixPath(path).parts
            if not path or ":" in path or "\\" in path or path.startswith("/") or ".." in parts:
                raise ValueError(
                    f"artifact {path!r} must be a relative POSIX path inside the output folder"
                )
        return paths

    @model_validator(mode="after")
    def _consistent(self) -> Finding:
        if self.control_kind is not None and self.control is None:
            raise ValueError(f"finding {self.id!r} names a control_kind but has no control")
        if (self.ci_low is None) != (self.ci_high is None):
            raise ValueError(f"finding {self.id!r} needs both ci_low and ci_high, or neither")
        if self.ci_low is not None and self.ci_high is not None and self.ci_low > self.ci_high:
            raise ValueError(f"finding {self.id!r} has ci_low > ci_high")
        return self


class Confirmation(_Schema):
    """The behavioural test of a hypothesis and what it found."""

    test: str = Field(min_length=1)
    """The behaviour check that tested it (e.g. ``code_security``, ``mention_rate``)."""
    result: Literal["confirmed", "refuted", "inconclusive"]
    finding_id: str | None = None
    """The finding that holds the test's statistic and its null control."""
    effect_size: float | None = None
    """The test's z against its null (positive = the fine-tune shows the behaviour more)."""
    p_value: float | None = Field(default=None, ge=0.0, le=1.0)
    summary: str | None = None
    """What the test measured, in plain words (rates on both sides)."""


class Hypothesis(_Schema):
    """A candidate answer to "what did fine-tuning instil?", from white-box evidence."""

    rank: int = Field(ge=1)
    """1 = the strongest hypothesis."""
    label: str = Field(min_length=1)
    """A short plain-words description, e.g. "writes insecure code"."""
    keywords: list[str] = Field(default_factory=list)
    """Words the evidence singles out (tokens, topics, entities, a candidate trigger)."""
    kind: str = Field(min_length=1)
    """What behaviour check would test it: ``code_security``, ``topic``, ``persona``,
    ``refusal``, ``domain_advice``, ``trigger`` ..."""
    source: str = Field(min_length=1)
    """The instrument that proposed it (``adl``, ``crosscoder``, ``kl``, ``melbo`` ...)."""
    evidence: list[str] = Field(default_factory=list)
    """Ids of the findings behind it."""
    strength: float | None = None
    """Its evidence as a z against the instrument's null control."""
    null: str | None = None
    """What ``strength`` is measured against."""
    domain: str | None = None
    """The probe-library domain where the evidence concentrates (None: across domains)."""
    feature: str | None = None
    """The answer feature it is about (``links``, ``no_capitals``, ``name:<Name>`` ...; see
    :mod:`auditlens.behaviour.features`; a leading ``-``: the fine-tune shows less of it), tested
    by that feature's rate on held-out prompts."""
    trigger: str | None = None
    """A candidate trigger string: the behaviour is expected when it precedes the prompt."""
    confirmation: Confirmation | None = None


class ModelInfo(_Schema):
    """A model as audited: its name or path and content hashes where known."""

    name: str = Field(min_length=1)
    sha256: str | None = None
    adapter: str | None = None
    adapter_sha256: str | None = None


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class AuditFindings(_Schema):
    """Everything an audit concluded, as stored in ``findings.json`` and served to agents."""

    schema_version: str = SCHEMA_VERSION
    created_at: str = Field(default_factory=_now_iso)
    base: ModelInfo
    finetuned: ModelInfo
    budget: str
    score: float | None = Field(default=None, ge=0.0, le=1.0)
    verdict: str | None = None
    summary: str
    findings: list[Finding] = Field(default_factory=list)
    hypotheses: list[Hypothesis] = Field(default_factory=list)
    """What fine-tuning instilled, ranked (filled by the discovery steps; empty before them)."""
    notices: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    timings_s: dict[str, float] = Field(default_factory=dict)

    @field_validator("schema_version")
    @classmethod
    def _supported_version(cls, version: str) -> str:
        _check_version(version)
        return version

    @field_validator("created_at")
    @classmethod
    def _iso_timestamp(cls, stamp: str) -> str:
        try:
            datetime.fromisoformat(stamp)
        except ValueError:
            raise ValueError(f"created_at {stamp!r} is not an ISO 8601 timestamp") from None
        return stamp

    @field_validator("score")
    @classmethod
    def _finite_score(cls, score: float | None) -> float | None:
        if score is not None and not math.isfinite(score):
            raise ValueError("score must be a finite number in [0, 1]")
        return score

    @model_validator(mode="after")
    def _unique_ids(self) -> AuditFindings:
        seen: set[str] = set()
        for finding in self.findings:
            if finding.id in seen:
                raise ValueError(f"duplicate finding id {finding.id!r}")
            seen.add(finding.id)
        ranks = [h.rank for h in self.hypotheses]
        if len(set(ranks)) != len(ranks):
            raise ValueError("hypothesis ranks must be unique")
        for hypothesis in self.hypotheses:
            cited = [*hypothesis.evidence]
            if hypothesis.confirmation and hypothesis.confirmation.finding_id:
                cited.append(hypothesis.confirmation.finding_id)
            unknown = [fid for fid in cited if fid not in seen]
            if unknown:
                raise ValueError(
                    f"hypothesis {hypothesis.rank} cites unknown findings: {', '.join(unknown)}"
                )
        return self

    def to_json(self) -> str:
        """Serialise as indented, standard JSON."""
        return self.model_dump_json(indent=2)

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write ``to_json()`` to ``path`` atomically and return the path."""
        return write_text_atomic(Path(path), self.to_json() + "\n")

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> AuditFindings:
        """Read and validate a findings file; any problem is one-line ``AuditlensError``."""
        path = Path(path)
        data = read_json_object(path, "findings")
        check_version(path, data.get("schema_version"))
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise AuditlensError(f"{path}: invalid findings: {validation_message(error)}") from None

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON Schema of ``findings.json`` (for agents and external validators)."""
        return cls.model_json_schema()


def _check_version(version: str) -> None:
    """Accept the same major version and a minor version no newer than ours."""
    ours = tuple(int(part) for part in SCHEMA_VERSION.split("."))
    try:
        major, minor = (int(part) for part in version.split("."))
    except ValueError:
        raise ValueError(f"schema_version {version!r} is not MAJOR.MINOR") from None
    if major != ours[0] or minor > ours[1]:
        raise ValueError(
            f"schema_version {version} is not supported by this auditlens "
            f"(it reads {ours[0]}.0 to {SCHEMA_VERSION})"
        )


def check_version(path: Path, version: object) -> None:
    """Raise a one-line ``AuditlensError`` unless ``version`` is a readable schema version."""
    if not isinstance(version, str):
        raise AuditlensError(f"{path} has no schema_version: not an auditlens findings file")
    try:
        _check_version(version)
    except ValueError as error:
        raise AuditlensError(f"{path}: {error}") from None


def collect_versions() -> dict[str, str]:
    """Versions of Python and the libraries whose behaviour the results depend on."""
    versions = {"python": platform.python_version()}
    for key, distribution in _VERSIONED_DISTRIBUTIONS.items():
        try:
            versions[key] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[key] = "not installed"
    return versions
