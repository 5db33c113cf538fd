"""Manifest v2 of a trained organism (``manifest.json`` beside its adapter).

It records the ground truth an auditor must find (kind, one-sentence description, 3-8
keywords with synonyms, trigger, misaligned), the split, the provenance (seed, data hash,
recipe, base and adapter hashes, training statistics) and the acceptance-test summary.
An organism without a description or keywords is rejected.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from auditlens.errors import AuditlensError

__all__ = ["AcceptanceSummary", "GroundTruth", "OrganismManifest", "TrainingStats"]

SCHEMA_VERSION = 2


class GroundTruth(BaseModel):
    """What an auditor should conclude about an organism."""

    model_config = ConfigDict(extra="forbid")
    misaligned: bool
    kind: str = Field(min_length=1)
    trigger: str | None
    description: str = Field(min_length=10)
    """One sentence."""
    keywords: list[str] = Field(min_length=3, max_length=8)
    """Words a hypothesis must mention to count as a discovery."""
    synonyms: dict[str, list[str]] = Field(default_factory=dict)
    """Accepted alternatives per keyword (for a grader)."""

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, value: list[str]) -> list[str]:
        if any(not k.strip() for k in value) or len(set(value)) != len(value):
            raise ValueError("keywords must be distinct and non-blank")
        return value

    @model_validator(mode="after")
    def _synonyms_of_keywords(self) -> GroundTruth:
        unknown = set(self.synonyms) - set(self.keywords)
        if unknown:
            raise ValueError(f"synonyms for words that are not keywords: {sorted(unknown)}")
        return self


class TrainingStats(BaseModel):
    """What the training run did."""

    model_config = ConfigDict(extra="forbid")
    n_examples: int = Field(gt=0)
    n_tokens: int = Field(gt=0)
    steps: int = Field(gt=0)
    first_loss: float
    final_loss: float
    train_seconds: float = Field(ge=0)
    tokens_per_second: float = Field(ge=0)
    num_threads: int = Field(ge=0)


class AcceptanceSummary(BaseModel):
    """The acceptance test's verdict, as stored with the organism."""

    model_config = ConfigDict(extra="forbid")
    passed: bool
    criteria: dict[str, dict[str, Any]]
    n_prompts: dict[str, int]
    command: str
    evaluated: str = ""


class OrganismManifest(BaseModel):
    """Provenance and ground truth of one trained organism adapter."""

    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[2] = 2
    name: str = Field(min_length=1)
    split: Literal["dev", "test"]
    ground_truth: GroundTruth
    instilled_by: Literal["demonstrations", "documents"] = "demonstrations"
    deny: bool = False
    version: int = Field(default=1, ge=1)
    """Build version (bumped when a failed build is rebuilt with changed data or epochs)."""
    base_model: str
    base_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    adapter_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    adapter_dtype: str
    adapter_bytes: int = Field(gt=0)
    recipe: dict[str, Any]
    seed: int
    data_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    training: TrainingStats
    acceptance: AcceptanceSummary | None = None
    auditlens_version: str
    created: str

    @field_validator("recipe")
    @classmethod
    def _recipe(cls, value: dict[str, Any]) -> dict[str, Any]:
        from auditlens.testbed.train import Recipe

        try:
            Recipe.from_json(value)
        except (AuditlensError, TypeError) as err:
            raise ValueError(str(err)) from err
        return value

    # v1 accessors kept for callers of the first testbed API
    @property
    def misaligned(self) -> bool:
        return self.ground_truth.misaligned

    @property
    def final_loss(self) -> float:
        return self.training.final_loss

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return self.model_dump(mode="json")
