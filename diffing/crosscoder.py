"""The crosscoder method: one sparse dictionary over both models, its model-specific latents.

Face: ``run(store, site, CrosscoderSettings(...), pair=pair) -> CrosscoderDiff`` trains a
BatchTopK crosscoder on a store's paired activations at one site (with a base-vs-base control
trained the same way), classifies its latents by relative decoder norm (with Latent Scaling)
and interprets the most fine-tune-specific live ones; ``evidence(diff)`` reports the fraction
of fine-tune-only latents beside the control and a latent table. The audit's diffing step and
the agent's ``top_diff_latents`` / ``latent_details`` / ``steer_generate(vector="latent:ID")``
tools all run this with the same settings and share the result through the artifact cache,
so a latent id means the same latent everywhere.

The building blocks: :mod:`~auditlens.diffing.crosscoder_model` (the module and its
checkpoints), :mod:`~auditlens.diffing.crosscoder_train` (the trainer) and
:mod:`~auditlens.diffing.crosscoder_analysis` (classes, Latent Scaling, ``crosscoder_diff``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from auditlens.diffing.crosscoder_analysis import (
    CrosscoderResult,
    crosscoder_diff,
    load_crosscoder_result,
)
from auditlens.diffing.crosscoder_model import CheckpointError, Crosscoder, CrosscoderConfig
from auditlens.diffing.crosscoder_train import CrosscoderTrainConfig, default_n_steps
from auditlens.diffing.latents import LatentReport, interpret_latents
from auditlens.errors import AuditlensError
from auditlens.lens import recurring_words
from auditlens.models import ModelPair
from auditlens.reports.evidence import Evidence
from auditlens.reports.findings import Finding, Hypothesis
from auditlens.reports.sections import Table
from auditlens.store import ActivationStore

__all__ = [
    "CheckpointError",
    "Crosscoder",
    "CrosscoderConfig",
    "CrosscoderDiff",
    "CrosscoderSettings",
    "evidence",
    "load",
    "run",
]


@dataclass(frozen=True)
class CrosscoderSettings:
    """The dictionary, its training and the latents interpreted."""

    n_latents: int | None = 1024
    """Dictionary size; None: ``expansion × d_model``."""
    expansion: int = 8
    """Latents per model dimension when ``n_latents`` is None."""
    k: float | None = None
    """BatchTopK: mean active latents per token; None: ``min(32, n_latents / 4)``."""
    steps: int | None = 300
    """Optimiser steps; None: ``epochs`` passes over the store's tokens."""
    epochs: float = 4.0
    """Passes over the tokens when ``steps`` is None."""
    lr: float = 1e-3
    """Adam learning rate."""
    batch_size: int | None = None
    """Tokens per step; None: ``min(512, max(16, n_tokens // 2))``."""
    control: bool = True
    """Also train on base-vs-base pairs (the base activation in both slots): the null."""
    ratio_threshold: float = 0.5
    """Latent Scaling ν at which an "exclusive" latent is re-labelled shared."""
    n_interpreted: int = 8
    """Live latents with the lowest relative decoder norm interpreted for the report."""
    n_contexts: int = 3
    """Top-activating contexts per interpreted latent."""
    window: int = 6
    """Tokens of context on each side of the focus token."""
    n_logit_tokens: int = 8
    """Promoted / suppressed tokens per interpreted latent (logit lens of its decoder)."""
    seed: int = 0
    """Seed of the weights and of the data order."""

    def __post_init__(self) -> None:
        counts = [self.expansion, self.n_contexts, self.window, self.n_logit_tokens]
        optional = [self.n_latents, self.steps, self.batch_size]
        if min(counts) < 1 or any(v is not None and v < 1 for v in optional):
            raise AuditlensError("crosscoder settings need positive sizes and counts")
        if self.n_interpreted < 0 or self.lr <= 0 or self.epochs <= 0:
            raise AuditlensError("crosscoder settings need n_interpreted >= 0, lr, epochs > 0")
        if self.k is not None and self.k <= 0:
            raise AuditlensError("k must be positive")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CrosscoderDiff:
    """A trained and analysed crosscoder at one site and the interpreted latents."""

    result: CrosscoderResult
    site: str
    settings: CrosscoderSettings
    latents: LatentReport | None
    n_tokens: int

    @property
    def crosscoder(self) -> Crosscoder:
        return self.result.crosscoder

    def save(self, directory: str | Path) -> Path:
        """The crosscoder (``crosscoder/``), ``result.json``, ``analysis.safetensors``,
        ``latents/`` and ``diff.json``."""
        out = Path(directory)
        self.result.save(out)
        if self.latents is not None:
            self.latents.save(out / "latents")
        meta = {"site": self.site, "settings": self.settings.to_json(), "n_tokens": self.n_tokens}
        (out / "diff.json").write_text(json.dumps(meta, indent=1))
        return out


def load(directory: str | Path) -> CrosscoderDiff:
    """Read a :class:`CrosscoderDiff` written by :meth:`CrosscoderDiff.save`."""
    path = Path(directory)
    try:
        meta = json.loads((path / "diff.json").read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path} holds no crosscoder diff: {err}") from err
    latents = LatentReport.load(path / "latents") if (path / "latents").is_dir() else None
    return CrosscoderDiff(
        load_crosscoder_result(path),
        meta["site"],
        CrosscoderSettings(**meta["settings"]),
        latents,
        int(meta["n_tokens"]),
    )


def run(
    store: ActivationStore,
    site: str,
    settings: CrosscoderSettings | None = None,
    *,
    pair: ModelPair | None = None,
    progress: bool = True,
) -> CrosscoderDiff:
    """Train, analyse and (with ``pair``, for logit effects) interpret a crosscoder at ``site``."""
    s = settings or CrosscoderSettings()
    n_latents = s.n_latents or s.expansion * store.d_model
    batch = s.batch_size or min(512, max(16, store.n_tokens // 2))
    config = CrosscoderConfig(
        d_model=store.d_model,
        n_latents=n_latents,
        k=s.k or min(32.0, n_latents / 4),
        sites=(site,),
    )
    steps = s.steps or default_n_steps(store.n_tokens, batch, s.epochs)
    train = CrosscoderTrainConfig(
        n_steps=steps, lr=s.lr, log_every=max(1, steps // 10), seed=s.seed
    )
    result = crosscoder_diff(
        store, site, config=config, train=train, batch_size=batch, control=s.control,
        ratio_threshold=s.ratio_threshold, seed=s.seed, progress=progress,
    )  # fmt: skip
    an = result.analysis
    alive = [i for i in range(n_latents) if float(an.frequency[i]) > 0]
    top = sorted(alive, key=lambda i: float(an.relative_norm[i]))[: s.n_interpreted]
    latents = None
    if top:
        latents = interpret_latents(
            result.crosscoder, store, top, pair=pair, top_n=s.n_contexts, window=s.window,
            n_logit_tokens=s.n_logit_tokens, progress=progress,
        )  # fmt: skip
    return CrosscoderDiff(result, site, s, latents, store.n_tokens)


def _fmt_tokens(tokens: list[tuple[str, float]], n: int) -> str:
    return ", ".join(repr(t) for t, _ in tokens[:n])


def evidence(diff: CrosscoderDiff, where: str | None = None) -> Evidence:
    """The fine-tune-only fraction beside its base-vs-base control; the interpreted latents.

    The finding's ``refs`` name the interpreted latents (``latent:ID``) in the syntax of the
    agent tools. ``where`` is the folder (relative to the report) the diff was saved into.
    """
    an, site, s = diff.result.analysis, diff.site, diff.settings
    counts = an.counts()
    null = diff.result.control.get("base_vs_base", {})
    frac = an.statistics()["frac_ft_only"]
    rows: list[list[Any]] = []
    for info in diff.latents.latents if diff.latents else []:
        i = info.latent
        contexts = " | ".join(str(c.get("text", c["token_id"])) for c in info.top_contexts)
        effects = info.logit_effects.get("finetuned", {})
        rows.append(
            [
                i,
                float(an.relative_norm[i]),
                an.final_class[i],
                info.frequency,
                contexts,
                _fmt_tokens(effects.get("promoted", []), s.n_logit_tokens),
            ]
        )
    fve = {k: v for k, v in diff.result.training.final().items() if k.startswith("fve_")}
    null_frac = float(null.get("frac_ft_only", 0.0))
    n_latents = len(an.final_class)
    steps = diff.result.training.steps
    finding = Finding(
        id="diffing.crosscoder.ft_only",
        family="diffing",
        method="crosscoder",
        site=site,
        statistic="fraction of crosscoder latents that are fine-tune-only (rel. decoder norm)",
        value=frac,
        control=null_frac if null else None,
        control_kind="crosscoder trained on base-vs-base pairs" if null else None,
        summary=(
            f"A BatchTopK crosscoder ({n_latents} latents, {steps} steps, {diff.n_tokens} "
            f"tokens) at {site}: {counts['ft_only']} fine-tune-only, {counts['base_only']} "
            f"base-only, {counts['shared']} shared, {counts['other']} other latents "
            f"(base-vs-base control: {null_frac:.3g} ft-only fraction). "
            + ", ".join(f"{k} {v:.3f}" for k, v in fve.items())
        ),
        artifacts=[
            f"{where}/{name}"
            for name in ("result.json", "latents/latents.json")
            if where and (name == "result.json" or diff.latents is not None)
        ],
        refs=[f"latent:{row[0]}" for row in rows],
    )
    table = Table(
        title=f"Top fine-tune-specific crosscoder latents at {site}",
        caption=(
            "Live latents with the lowest relative decoder norm (0 = fine-tuned only, "
            "0.5 = shared), their top-activating contexts (focus token in ⟦ ⟧) and the "
            "tokens their fine-tuned decoder promotes through the fine-tuned unembedding. "
            f"Counts: {counts['ft_only']} ft-only, {counts['shared']} shared, "
            f"{counts['base_only']} base-only, {counts['other']} other. The latent ids are "
            "those of the agent tools (latent_details, steer_generate with latent:ID). "
            + _data_note(diff.n_tokens, n_latents)
        ),
        columns=["latent", "rel. norm", "class", "frequency", "top contexts", "promotes"],
        rows=rows,
    )
    return Evidence(findings=[finding], sections=[table], hypotheses=_hypotheses(diff, null))


TOKENS_PER_LATENT = 100
"""Below this many training tokens per latent a dictionary cannot be expected to learn
specialised latents (published crosscoders train on millions of tokens, thousands per latent)."""


def _data_note(n_tokens: int, n_latents: int) -> str:
    """What the number of training tokens means for the dictionary, in plain words."""
    per = n_tokens / max(n_latents, 1)
    head = f"Trained on {n_tokens} tokens for {n_latents} latents ({per:.1f} tokens per latent)"
    if per < TOKENS_PER_LATENT:
        return (f"{head}: far too few for specialised latents at this budget, so an empty or "
                "noisy table says the data were too few, not that nothing changed.")  # fmt: skip
    return f"{head}."


def _hypotheses(diff: CrosscoderDiff, null: dict[str, Any], min_z: float = 2.0) -> list[Hypothesis]:
    """Words promoted by two or more fine-tune-only latents, when the fine-tune-only fraction
    is above its base-vs-base control (binomial z over the dictionary's latents)."""
    an = diff.result.analysis
    if not null or diff.latents is None:
        return []
    n = len(an.final_class)
    frac, p0 = an.statistics()["frac_ft_only"], max(float(null.get("frac_ft_only", 0.0)), 1 / n)
    z = (frac - p0) / math.sqrt(p0 * (1 - p0) / n)
    ft_only = [i for i in diff.latents.latents if an.final_class[i.latent] == "ft_only"]
    reads = [[t for t, _ in i.logit_effects.get("finetuned", {}).get("promoted", [])][:10]
             for i in ft_only]  # fmt: skip
    words = (
        recurring_words(reads)[:6] if len(reads) > 1 else recurring_words(reads, min_count=1)[:4]
    )
    if z < min_z or not words:
        return []
    return [
        Hypothesis(
            rank=1, label="fine-tune-only crosscoder latents promote: " + ", ".join(words[:3]),
            keywords=words, kind="topic", source="crosscoder",
            evidence=["diffing.crosscoder.ft_only"], strength=z,
            null="fine-tune-only fraction of a crosscoder trained on base vs base",
        )
    ]  # fmt: skip
