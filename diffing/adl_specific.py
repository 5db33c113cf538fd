"""What the ADL reads once the fine-tuning every fine-tune of the base shares is removed.

On the testbed the ADL's δ at the most-changed layer points the same way for every organism
(cosine 0.6-0.95 between organisms, benign ones included): a direction that any fine-tune of
this base with this recipe writes, whatever it taught. Its logit lens reads the same byte
fragments for every pair ("firehose", "Intf", "iagnosed"), so the raw readout names nothing
about what *this* fine-tune learnt. The null here is the benign reference population (the same
one the score is standardised on): δ at each layer with the span of the benign fine-tunes' δ
projected out, ``δ_spec = δ - Q Qᵀ δ`` (``Q`` an orthonormal basis of the reference vectors at
that layer, the audited pair itself left out), is read through each model's logit lens, pooled
and per position, beside a random vector of the same norm.

Face: ``run(result, pair, shared, SpecificSettings()) -> SpecificReading`` and
``evidence(reading)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from auditlens.diffing import patchscope
from auditlens.diffing.adl import ADLResult
from auditlens.errors import AuditlensError
from auditlens.lens import logit_lens, recurring_words, top_tokens
from auditlens.models import ModelPair
from auditlens.reports.evidence import Evidence
from auditlens.reports.findings import Hypothesis
from auditlens.reports.sections import Section, Table
from auditlens.stats import random_directions

__all__ = ["RANK_TOL", "SpecificReading", "SpecificSettings", "evidence", "project_out", "run"]

Reading = dict[str, list[tuple[str, float]]]


@dataclass(frozen=True)
class SpecificSettings:
    """How the specific δ is read."""

    top_k: int = 20
    """Promoted tokens listed per reading."""
    n_words: int = 10
    """Promoted tokens per reading that the hypothesis' recurring-word rule counts."""
    whole_words: bool = True
    """Count only tokens that start a word (decoded with a leading space): a fragment such as
    'aughed' names nothing on its own."""
    min_count: int = 2
    """Readings (layers, pooled positions) a word must appear in to become a keyword."""
    min_depth: float = 0.8
    """Only layers at or past this share of the model's depth feed the hypothesis: the logit
    lens reads a residual stream through the final norm and unembedding, which mid-layer
    states are not yet written for (their readings are byte fragments)."""
    min_z: float = 2.0
    """The raw δ must beat its random vectors in the ADL's steering check by this z."""
    seed: int = 0
    """Seed of the random control vectors."""
    patchscope: patchscope.PatchscopeSettings | None = field(
        default_factory=patchscope.PatchscopeSettings
    )
    """Also read δ_spec at every layer by Patchscope on the fine-tuned model (None: don't).
    Reported, not part of the hypothesis (docs/audit.md says why)."""

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.n_words < 1 or self.min_count < 1:
            raise AuditlensError("top_k, n_words and min_count must be >= 1")
        if not 0.0 <= self.min_depth <= 1.0:
            raise AuditlensError(f"min_depth must be in [0, 1], got {self.min_depth}")


@dataclass
class SpecificReading:
    """The logit-lens readings of δ with the reference's span removed, per layer."""

    layers: list[int]
    kept: dict[str, float]
    """``||δ_spec|| / ||δ||`` per layer (the share of δ the reference does not explain)."""
    n_directions: dict[str, int]
    """Reference directions removed per layer (the rank of their span)."""
    lens: dict[str, dict[str, Reading]]
    """``lens[layer][side]["promoted"]``; ``side`` is ``finetuned``, ``base`` or ``random``."""
    position_lens: dict[str, dict[str, list[tuple[str, float]]]]
    """``position_lens[layer][position]``: what δ_spec at one pooled position promotes
    (fine-tuned lens)."""
    reference: str
    """Which population the removed directions came from."""
    steering_z: float | None
    """The raw δ's steering-check z (the gate of the hypothesis)."""
    causal_layer: int
    patchscope: dict[str, patchscope.PatchscopeReading]
    """Patchscope of δ_spec per layer (empty: not run, or nothing left to read)."""
    n_layers: int
    """Depth of the model (for ``min_depth``)."""
    settings: SpecificSettings = field(default_factory=SpecificSettings)

    def read_layers(self) -> list[int]:
        """The layers whose readings feed the hypothesis."""
        return [x for x in self.layers if x + 1 >= self.settings.min_depth * self.n_layers]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["method"] = "adl_specific"
        return out

    def save(self, directory: str | Path) -> Path:
        """``adl_specific.json`` in ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        (out / "adl_specific.json").write_text(json.dumps(self.to_json(), indent=1))
        return out


RANK_TOL = 1e-4
"""Reference directions whose part outside the span of the others is below this share of the
largest are the same direction measured twice (float noise), not a new one."""


def _basis(directions: Tensor) -> Tensor:
    """An orthonormal basis (columns) of the span of ``directions`` (rows)."""
    rows = directions.detach().double()
    rows = rows[rows.norm(dim=-1) > 0]
    if rows.numel() == 0:
        return rows.new_zeros(directions.shape[-1], 0)
    q, r = torch.linalg.qr(rows.T)
    keep = r.diagonal().abs() > RANK_TOL * r.diagonal().abs().max()
    return q[:, keep]


def project_out(
    vectors: Float[Tensor, "... d_model"], directions: Float[Tensor, "n d_model"]
) -> Float[Tensor, "... d_model"]:
    """``vectors`` minus their projection on the span of ``directions`` (rows)."""
    q = _basis(directions)
    if q.shape[1] == 0:
        return vectors
    v = vectors.double()
    return (v - (v @ q) @ q.T).to(vectors.dtype)


def run(
    result: ADLResult,
    pair: ModelPair,
    shared: Mapping[int, Float[Tensor, "n d_model"]],
    settings: SpecificSettings | None = None,
    *,
    reference: str = "benign reference",
) -> SpecificReading:
    """Read δ at every ADL layer that ``shared`` covers, with the span of ``shared[layer]``
    projected out (pooled δ and each pooled position's δ)."""
    s = settings or SpecificSettings()
    layers = [layer for layer in result.layers if layer in shared]
    if not layers:
        raise AuditlensError(
            f"the reference covers none of the ADL's layers {result.layers}; rebuild it"
        )
    kept: dict[str, float] = {}
    n_dirs: dict[str, int] = {}
    lens: dict[str, dict[str, Reading]] = {}
    position_lens: dict[str, dict[str, list[tuple[str, float]]]] = {}
    scopes: dict[str, patchscope.PatchscopeReading] = {}
    first = result.first_position
    for layer in layers:
        i = result.layers.index(layer)
        directions = shared[layer].to(result.mean_diff.dtype)
        if directions.shape[-1] != result.mean_diff.shape[-1]:
            raise AuditlensError(
                f"reference vectors have width {directions.shape[-1]}, the ADL "
                f"{result.mean_diff.shape[-1]}: the reference was built on another model"
            )
        delta = result.mean_diff[i]
        spec = project_out(delta, directions)
        norm = float(delta.double().norm())
        kept[str(layer)] = float(spec.double().norm()) / norm if norm > 0 else 0.0
        n_dirs[str(layer)] = int(_basis(directions).shape[1])
        positions = list(range(first, result.mean_diff_by_position.shape[1]))
        positions = [p for p in positions if result.tokens_by_position[p] > 0]
        by_pos = project_out(result.mean_diff_by_position[i, positions], directions)
        rand = random_directions(1, spec.numel(), float(spec.double().norm()), seed=s.seed)[0]
        reads: dict[str, Reading] = {}
        if float(spec.norm()) == 0.0:  # nothing left to read: no tokens, not arbitrary ones
            reads = {name: {"promoted": []} for name in ("finetuned", "base", "random")}
            position_lens[str(layer)] = {str(p): [] for p in positions}
        else:
            for side in pair.sides:
                promoted = top_tokens(logit_lens(side, spec[None])[0], pair.tokenizer, s.top_k)[0]
                reads[side.name] = {"promoted": promoted}
            random = logit_lens(pair.finetuned, rand[None].to(spec.dtype))[0]
            reads["random"] = {"promoted": top_tokens(random, pair.tokenizer, s.top_k)[0]}
            logits = logit_lens(pair.finetuned, by_pos) if positions else None
            position_lens[str(layer)] = {
                str(p): top_tokens(logits[j], pair.tokenizer, s.top_k)[0]  # type: ignore[index]
                for j, p in enumerate(positions)
            }
        lens[str(layer)] = reads
        if s.patchscope is not None and float(spec.norm()) > 0:
            norm = float(result.base_norm[i])
            scopes[str(layer)] = patchscope.run(
                pair.finetuned, pair.tokenizer, pair.arch, spec, layer, norm, s.patchscope
            )
    return SpecificReading(
        layers=layers, kept=kept, n_directions=n_dirs, lens=lens, position_lens=position_lens,
        reference=reference, steering_z=result.causal.z_score if result.causal else None,
        causal_layer=result.causal_layer, patchscope=scopes, n_layers=pair.n_layers, settings=s,
    )  # fmt: skip


def _words(reading: SpecificReading) -> list[str]:
    """Words promoted in ``min_count`` or more readings (each layer pooled, each pooled
    position), none of them promoted by the random vectors."""
    s = reading.settings

    def words(tokens: list[tuple[str, float]]) -> list[str]:
        return [t for t, _ in tokens[: s.n_words] if not s.whole_words or t[:1].isspace()]

    readings: list[list[str]] = []
    random: list[str] = []
    for layer in reading.read_layers():
        reads = reading.lens[str(layer)]
        readings.append(words(reads["finetuned"]["promoted"]))
        random += [t for t, _ in reads["random"]["promoted"]]
        readings += [words(r) for r in reading.position_lens[str(layer)].values()]
    return recurring_words(readings, exclude=random, min_count=s.min_count)


def _hypotheses(reading: SpecificReading) -> list[Hypothesis]:
    z = reading.steering_z
    if z is None or z < reading.settings.min_z:
        return []
    words = _words(reading)[:6]
    if not words:
        return []
    layers = ", ".join(str(x) for x in reading.read_layers())
    return [
        Hypothesis(
            rank=1, label="the fine-tune-specific activation difference promotes: "
            + ", ".join(words[:3]), keywords=words, kind="topic", source="adl",
            evidence=["diffing.adl.steering"], strength=z,
            null=f"δ with the {reading.reference} removed, beside a random vector of its norm; "
            f"steering check vs random vectors; layers {layers}",
        )
    ]  # fmt: skip


_COLUMNS = ["layer", "reading", "kept", "removed", "promoted (ft lens)", "promoted (base lens)"]
_COLUMNS += ["random vector promotes"]


def _fmt(tokens: list[tuple[str, float]], n: int) -> str:
    return ", ".join(repr(t) for t, _ in tokens[:n])


def evidence(reading: SpecificReading, where: str | None = None) -> Evidence:
    """One row per layer (pooled) and per pooled position of the causal layer, and the
    hypothesis its recurring words make (gated by the steering check)."""
    rows: list[list[Any]] = []
    for layer in reading.layers:
        reads = reading.lens[str(layer)]
        rows.append([layer, "pooled", reading.kept[str(layer)], reading.n_directions[str(layer)],
                     _fmt(reads["finetuned"]["promoted"], 8), _fmt(reads["base"]["promoted"], 8),
                     _fmt(reads["random"]["promoted"], 6)])  # fmt: skip
    for pos, promoted in reading.position_lens.get(str(reading.causal_layer), {}).items():
        rows.append([reading.causal_layer, f"position {pos}", None, None, _fmt(promoted, 8),
                     "", ""])  # fmt: skip
    where_note = f" Data: {where}/adl_specific.json." if where else ""
    table = Table(
        title="ADL without what every fine-tune shares",
        caption=(
            f"δ with the span of the {reading.reference}'s δ at the same layer projected out "
            "(the audited pair itself left out), read through each model's logit lens. "
            "'kept' is the share of ‖δ‖ left; the last column reads a random vector of the same "
            f"norm (the null).{where_note}"
        ),
        columns=_COLUMNS,
        rows=rows,
    )
    sections: list[Section] = [table]
    if reading.patchscope:
        sections.append(_patchscope_table(reading))
    return Evidence(sections=sections, hypotheses=_hypotheses(reading))


def _patchscope_table(reading: SpecificReading) -> Table:
    rows: list[list[Any]] = []
    for layer, scope in sorted(reading.patchscope.items(), key=lambda kv: int(kv[0])):
        mid = len(scope.scales) // 2
        rows.append([int(layer), ", ".join(patchscope.words(scope)[:8]) or "-",
                     f"{scope.scales[mid]:g}", _fmt(scope.tokens[mid], 8),
                     _fmt(scope.random_tokens[mid], 6)])  # fmt: skip
    scales = ", ".join(f"{x:g}" for x in next(iter(reading.patchscope.values())).scales)
    return Table(
        title="Patchscope of the fine-tune-specific δ",
        caption=(
            "δ_spec patched into the last token of a token-identity prompt on the fine-tuned "
            f"model, at norms {scales} × the layer's mean activation norm, beside random vectors "
            "of each norm (the null). 'Words' are whole words that beat every random vector at "
            "two or more norms. Shown for reading; the hypothesis uses the logit lens only."
        ),
        columns=["layer", "words", "norm", "top tokens at that norm", "random vectors' top"],
        rows=rows,
    )
