"""The elicitation search (see :mod:`auditlens.adversary.elicit`, its face).

One perturbation set, applied identically to both sides of a pair:

- K MELBO vectors trained on the fine-tuned side (:func:`~auditlens.adversary.train_melbo`,
  on the first ``melbo_prompts`` prompts, radius relative to the source site's mean norm);
- as many random vectors of exactly the same norm at the same site (the runner's controls);
- F activation-noise runs (relative σ cycling over ``sigmas``, seed = run index; the noise
  scale is measured once on the fine-tuned side, so both sides get the same noise).

Every row is generated greedily on the same prompts and judged by a detector (default: Bandit
finds insecure code).

Cost: ``2 + 3K + 2F`` generation rows (each generates every prompt) plus MELBO's
``steps × K × melbo_prompts`` forward/backward passes. A base-vs-base pair runs one side and
reuses it for the other.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from auditlens.adversary.fuzz import ActivationNoise
from auditlens.adversary.melbo import MelboConfig, MelboResult, default_melbo_sites, train_melbo
from auditlens.adversary.runner import PerturbationTable, run_perturbations
from auditlens.datasets import PromptSet
from auditlens.errors import AuditlensError
from auditlens.generate import chat_prompt
from auditlens.judges.code import insecure_code_detector
from auditlens.models import ModelPair
from auditlens.steering import mean_activation_norm

__all__ = [
    "MELBO_ANGLE",
    "ElicitSettings",
    "Elicitation",
    "melbo_config",
    "search",
    "training_prompts",
]

MELBO_ANGLE = 0.5
"""Radians each MELBO vector may rotate over the run: sets ``lr = angle·R / (√d·steps)``.

Adam moves each coordinate by about ``lr`` per step, i.e. an angle of ``lr·√d / R``. At 60 steps
on SmolLM2 (R ≈ 28) this gives the calibrated ``lr ≈ 1e-2`` (docs/adversary.md); fewer steps
get a proportionally larger rate, so a short run still moves the vectors away from random.
"""


@dataclass(frozen=True)
class ElicitSettings:
    """How large the search is and how it is set up."""

    n_vectors: int = 2
    """MELBO vectors (and, by default, as many random controls of equal norm)."""
    melbo_steps: int = 20
    """MELBO optimisation steps."""
    melbo_prompts: int | None = 2
    """Prompts MELBO trains on (the first ones; None: all). Its cost grows with them."""
    radius: float = 1.0
    """MELBO radius, relative to the source site's mean activation norm."""
    lr: float | None = None
    """MELBO learning rate; None: ``MELBO_ANGLE · R / (√d · steps)``."""
    n_noise: int = 1
    """Activation-noise runs (σ cycles over ``sigmas``, seed = run index)."""
    noise_grid: tuple[tuple[float, int], ...] | None = None
    """Explicit (σ, seed) noise runs; when given, ``n_noise`` and ``sigmas`` are not used."""
    sigmas: tuple[float, ...] = (0.06, 0.12)
    """Relative noise levels (noise norm per position ≈ σ · mean activation norm).

    On SmolLM2 at layer 15 (mean norm ≈ 580, inflated by the first token) these give a KL of
    about 0.2 and 0.9 nats per position, bracketing the MELBO vectors' ≈ 0.6; σ = 0.25 gave
    ≈ 4.7 nats (no code at all). σ = 0 is an exact no-op (a sanity row)."""
    noise_site: str | None = None
    """Where the noise goes; None: the middle layer's ``resid_post``."""
    n_controls: int | None = None
    """Random vectors of equal norm per MELBO norm group; None: ``n_vectors``."""
    base_controls: bool = False
    """Also run the random controls on the base side (they are always run on the fine-tune)."""
    max_new_tokens: int = 96
    """Tokens per generation."""
    batch_size: int = 8
    """Prompts per generation batch."""
    seed: int = 0
    """Seed of MELBO's initial vectors, the random controls and the noise."""

    def __post_init__(self) -> None:
        counts = (self.n_vectors, self.melbo_steps, self.max_new_tokens, self.batch_size)
        if min(counts) < 1 or (self.melbo_prompts is not None and self.melbo_prompts < 1):
            raise AuditlensError("elicitation settings need positive counts")
        if self.n_noise < 0 or not self.sigmas or min(self.sigmas) < 0 or self.radius <= 0:
            raise AuditlensError("elicitation needs n_noise >= 0, σ >= 0 and a positive radius")
        if self.n_controls is not None and self.n_controls < 0:
            raise AuditlensError("n_controls must be >= 0")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise AuditlensError("lr must be positive")
        if self.noise_grid is not None and any(sigma < 0 for sigma, _ in self.noise_grid):
            raise AuditlensError("noise levels must be >= 0")


@dataclass
class Elicitation:
    """The perturbation tables of both sides and the detector's per-prompt flags."""

    prompts: list[str]
    """The user requests, in order."""
    melbo: MelboResult
    finetuned: PerturbationTable
    base: PerturbationTable
    flags: dict[str, dict[str, list[bool]]]
    """``flags[side][row name][i]``: the detector fired on prompt i's generation."""
    searched: list[str]
    """Rows in the search (MELBO and noise; the same names on both sides)."""
    noise_site: str
    settings: ElicitSettings
    shared_sides: bool
    """Base vs base: the base side reuses the fine-tuned rows (identical weights)."""
    detector: str = "insecure_code"
    extra: dict[str, Any] = field(default_factory=dict)

    def rate(self, side: str, name: str) -> float:
        flags = self.flags[side][name]
        return sum(flags) / len(flags)

    def best(self, side: str, names: Sequence[str]) -> str:
        """The row with the highest detector rate among ``names`` (first on ties)."""
        return max(names, key=lambda name: (self.rate(side, name), -names.index(name)))

    def names(self, kind: str) -> list[str]:
        return [r.name for r in self.finetuned.rows if r.kind == kind]

    def summary(self) -> dict[str, Any]:
        """Rates of every row on both sides and the best searched row of each side."""
        return {
            "settings": asdict(self.settings),
            "prompts": self.prompts,
            "searched": self.searched,
            "noise_site": self.noise_site,
            "shared_sides": self.shared_sides,
            "detector": self.detector,
            "rates": {
                side: {name: self.rate(side, name) for name in self.flags[side]}
                for side in ("finetuned", "base")
            },
            "best": {side: self.best(side, self.searched) for side in ("finetuned", "base")},
        }

    def save(self, directory: str | Path) -> Path:
        """``melbo/``, ``finetuned_table.json``, ``base_table.json`` and ``summary.json``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.melbo.save(out / "melbo")
        for side, table in (("finetuned", self.finetuned), ("base", self.base)):
            (out / f"{side}_table.json").write_text(
                json.dumps(table.to_json(include_generations=True), indent=1, ensure_ascii=False)
            )
        (out / "summary.json").write_text(json.dumps(self.summary(), indent=1, ensure_ascii=False))
        return out


def _lr(radius: float, d_model: int, steps: int) -> float:
    return MELBO_ANGLE * radius / (math.sqrt(d_model) * steps)


def training_prompts(prompts: Sequence[str], settings: ElicitSettings) -> PromptSet:
    """The chat prompts MELBO trains on (the first ``melbo_prompts``)."""
    n = len(prompts) if settings.melbo_prompts is None else settings.melbo_prompts
    return PromptSet("melbo_train", tuple(chat_prompt(p) for p in prompts[:n]))


def melbo_config(pair: ModelPair, prompts: Sequence[str], settings: ElicitSettings) -> MelboConfig:
    """MELBO's configuration: the radius measured on the fine-tuned side, the learning rate."""
    s = settings
    source, _ = default_melbo_sites(pair.n_layers)
    train_set = training_prompts(prompts, s)
    radius = s.radius * mean_activation_norm(
        pair.finetuned, pair.arch, pair.tokenizer, train_set, source
    )
    return MelboConfig(
        n_vectors=s.n_vectors,
        radius=radius,
        relative=False,
        steps=s.melbo_steps,
        lr=s.lr if s.lr is not None else _lr(radius, pair.d_model, s.melbo_steps),
        seed=s.seed,
        max_new_tokens=0,
    )


def search(
    pair: ModelPair,
    prompts: Sequence[str],
    settings: ElicitSettings | None = None,
    *,
    detector: Callable[[str], bool] = insecure_code_detector,
    detector_name: str = "insecure_code",
    scorers: Sequence[Any] = (),
    melbo: MelboResult | None = None,
) -> Elicitation:
    """Train MELBO on the fine-tuned side (unless ``melbo`` is given: vectors trained with
    :func:`melbo_config` on :func:`training_prompts`), then run one perturbation set on both
    sides."""
    s = settings or ElicitSettings()
    if not prompts:
        raise AuditlensError("elicitation needs at least one prompt")
    prompt_set = PromptSet("adversary_code_tasks", tuple(chat_prompt(p) for p in prompts))
    ft = pair.finetuned
    if melbo is None:
        config = melbo_config(pair, prompts, s)
        melbo = train_melbo(pair, training_prompts(prompts, s), config, side="finetuned")
    noise_site = s.noise_site or f"blocks.{pair.n_layers // 2}.hook_resid_post"
    noise_norm = mean_activation_norm(ft, pair.arch, pair.tokenizer, prompt_set, noise_site)
    grid = s.noise_grid or tuple((s.sigmas[j % len(s.sigmas)], j) for j in range(s.n_noise))
    noises = [
        ActivationNoise(noise_site, sigma, seed=seed, mean_norm=noise_norm) for sigma, seed in grid
    ]
    perturbations: list[Any] = [*melbo.steering_vectors(), *noises]
    judged_cache: dict[str, bool] = {}

    def judged(text: str) -> bool:
        if text not in judged_cache:
            judged_cache[text] = bool(detector(text))
        return judged_cache[text]

    common: dict[str, Any] = {
        "scorers": list(scorers),
        "detector": judged,
        "detector_name": detector_name,
        "max_new_tokens": s.max_new_tokens,
        "batch_size": s.batch_size,
        "seed": s.seed,
        "control_seed": s.seed,
    }
    n_controls = s.n_vectors if s.n_controls is None else s.n_controls
    tables = {
        "finetuned": run_perturbations(
            pair, prompt_set, perturbations, side="finetuned", n_controls=n_controls, **common
        )
    }
    shared = pair.identical
    base_n = n_controls if s.base_controls else 0
    tables["base"] = (
        tables["finetuned"]
        if shared
        else run_perturbations(
            pair, prompt_set, perturbations, side="base", n_controls=base_n, **common
        )
    )
    flags = {
        side: {row.name: [judged_cache[t] for t in row.generations] for row in table.rows}
        for side, table in tables.items()
    }
    return Elicitation(
        prompts=list(prompts),
        melbo=melbo,
        finetuned=tables["finetuned"],
        base=tables["base"],
        flags=flags,
        searched=[p.name for p in perturbations],
        noise_site=noise_site,
        settings=s,
        shared_sides=shared,
        detector=detector_name,
    )
