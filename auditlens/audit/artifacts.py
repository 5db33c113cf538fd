"""The shared artifacts: one keyed getter per expensive object, for the audit and the agent.

Each getter returns ``(object, folder, built_now)``; the folder lives in the
:class:`~auditlens.audit.cache.ArtifactCache`. Two callers that ask with the same pair, site,
settings and prompt contents get the same object: the crosscoder behind a report's latent ids
is the one ``latent_details`` reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from auditlens.adversary.melbo import MelboConfig, MelboResult, train_melbo
from auditlens.audit.cache import ArtifactCache, pair_identity
from auditlens.datasets import PromptSet
from auditlens.diffing import adl, crosscoder
from auditlens.errors import AuditlensError
from auditlens.generate import BatchSize, chat_prompt, generate
from auditlens.harvest import harvest
from auditlens.models import ModelPair, ModelSide
from auditlens.probe_library import ProbePrompt
from auditlens.store import ActivationStore

__all__ = [
    "adl_result", "answers", "crosscoder_diff", "harvested", "melbo_vectors", "probe_generations",
]  # fmt: skip


def harvested(
    cache: ArtifactCache,
    pair: ModelPair,
    prompts: PromptSet,
    sites: Sequence[str],
    *,
    batch_size: int,
    max_length: int,
    mask: str = "content",
    progress: bool = True,
) -> tuple[ActivationStore, Path, bool]:
    """Paired activations of ``prompts`` at ``sites`` (a store). The default ``content`` mask
    leaves out the attention sink and chat-template tokens every prompt shares, which would
    otherwise be every top latent's context."""
    parts = {
        "pair": pair_identity(pair),
        "prompts": prompts.sha256,
        "sites": list(sites),
        "batch_size": batch_size,
        "max_length": max_length,
        "mask": mask,
    }

    def build(folder: Path) -> None:
        harvest(
            pair, prompts, list(sites), folder, batch_size=batch_size, max_length=max_length,
            mask=mask, progress=progress,
        )  # fmt: skip

    return cache.get("store", parts, build, ActivationStore.open)


def crosscoder_diff(
    cache: ArtifactCache,
    pair: ModelPair,
    prompts: PromptSet,
    site: str,
    settings: crosscoder.CrosscoderSettings,
    *,
    batch_size: int,
    max_length: int,
    progress: bool = True,
) -> tuple[crosscoder.CrosscoderDiff, Path, bool]:
    """The crosscoder at ``site`` on the harvested ``prompts`` (trained once, then shared)."""
    store, store_dir, _ = harvested(
        cache, pair, prompts, [site], batch_size=batch_size, max_length=max_length,
        progress=progress,
    )  # fmt: skip
    parts: dict[str, Any] = {"store": store_dir.name, "site": site, "settings": settings}

    def build(folder: Path) -> None:
        crosscoder.run(store, site, settings, pair=pair, progress=progress).save(folder)

    return cache.get("crosscoder", parts, build, crosscoder.load)


def adl_result(
    cache: ArtifactCache,
    pair: ModelPair,
    prompts: PromptSet,
    config: adl.ADLConfig,
    *,
    progress: bool = True,
) -> tuple[adl.ADLResult, Path, bool]:
    """The Activation Difference Lens of ``prompts`` (with its steering vector saved beside)."""
    parts = {"pair": pair_identity(pair), "prompts": prompts.sha256, "config": config}

    def build(folder: Path) -> None:
        result = adl.run(pair, prompts, config, progress=progress)
        result.save(folder)
        result.steering_vector().save(folder / "steering_vector")

    return cache.get("adl", parts, build, adl.ADLResult.load)


def melbo_vectors(
    cache: ArtifactCache,
    pair: ModelPair,
    prompts: PromptSet,
    config: MelboConfig,
    *,
    side: str = "finetuned",
) -> tuple[MelboResult, Path, bool]:
    """MELBO vectors trained on ``prompts`` with ``config`` on one side."""
    parts = {"pair": pair_identity(pair), "prompts": prompts.sha256, "config": config}
    parts["side"] = side

    def build(folder: Path) -> None:
        train_melbo(pair, prompts, config, side=side).save(folder)  # type: ignore[arg-type]

    return cache.get("melbo", parts, build, MelboResult.load)


def answers(
    cache: ArtifactCache,
    pair: ModelPair,
    prompts: PromptSet,
    *,
    max_new_tokens: int,
    batch_size: BatchSize,
    temperature: float = 0.0,
    seed: int = 0,
) -> tuple[dict[str, list[str]], tuple[str, ...]]:
    """Both sides' answers to ``prompts`` (greedy, or sampled and seeded by the prompt index),
    each side cached apart under its own effective weights: every fine-tune of one base reuses
    the base's answers (a testbed run, a reference build, an audit of several checkpoints),
    and base vs base generates once. A side is generated alone with the same settings whatever
    the cache holds, so its answers never depend on the other side or on earlier runs (paired
    generation gives the same text: tests/test_generate.py). Returns ``({side: answers}, the
    sides generated now)``."""
    common: dict[str, Any] = {
        "dtype": str(next(pair.base.hf.parameters()).dtype),
        "prompts": prompts.sha256,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "temperature": temperature,
        "seed": seed if temperature > 0 else None,
    }

    def load(folder: Path) -> list[str]:
        texts: list[str] = json.loads((folder / "generations.json").read_text())
        return texts

    out: dict[str, list[str]] = {}
    built: list[str] = []
    for side in pair.sides:

        def build(folder: Path, side: ModelSide = side) -> None:
            texts = generate(
                side, pair.tokenizer, prompts, max_new_tokens=max_new_tokens,
                temperature=temperature, seed=seed, batch_size=batch_size, share_prefix=True,
            )  # fmt: skip
            (folder / "generations.json").write_text(json.dumps(texts, ensure_ascii=False))

        out[side.name], _, now = cache.get("answers", {"model": side.fingerprint, **common},
                                           build, load)  # fmt: skip
        if now:
            built.append(side.name)
    return out, tuple(built)


def probe_generations(
    cache: ArtifactCache,
    pair: ModelPair,
    probes: Sequence[ProbePrompt],
    *,
    max_new_tokens: int,
    batch_size: int,
    samples: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
) -> tuple[dict[str, list[str]], tuple[str, ...]]:
    """Both models' greedy answers to probe prompts (:func:`answers`), shared by the
    divergent-word instrument, the behaviour checks and the agent tools. With
    ``temperature > 0``: ``samples`` sampled answers per probe and side, consecutive."""
    if temperature <= 0 and samples != 1:
        raise AuditlensError("greedy probe answers are one per probe; sample for more")
    repeated = tuple(chat_prompt(p.text) for p in probes for _ in range(samples))
    return answers(
        cache, pair, PromptSet("probe_answers", repeated), max_new_tokens=max_new_tokens,
        batch_size=batch_size, temperature=temperature, seed=seed,
    )  # fmt: skip
