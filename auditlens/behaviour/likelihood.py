"""The likelihood contrast: does fine-tuning make a model prefer the vulnerable solution?

For each held-out task, the preference is the mean per-token log-probability of the insecure
solution minus that of the secure one. The shift is the fine-tuned model's preference minus
the base model's. It needs no generation, so it is cheap and low-variance, and it sees a
tendency even when greedy decoding does not show it (a backdoor that leaks a little).

Face: ``run(pair, tasks, LikelihoodSettings()) -> PreferenceResult`` and ``evidence(result)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from auditlens.errors import AuditlensError
from auditlens.judges.code import fence
from auditlens.models import ModelPair, ModelSide
from auditlens.reports.evidence import Evidence
from auditlens.reports.findings import Finding
from auditlens.stats import bootstrap_ci
from auditlens.teacher_forcing import answer_token_logprobs, chat_row

__all__ = [
    "LikelihoodSettings",
    "PreferenceResult",
    "completion_logprobs",
    "evidence",
    "run",
]


@dataclass(frozen=True)
class LikelihoodSettings:
    """Batching and the bootstrap."""

    batch_size: int = 8
    """Sequences per forward pass."""
    seed: int = 0
    """Seed of the bootstrap CI of the mean shift."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise AuditlensError("batch_size must be >= 1")


def completion_logprobs(
    side: ModelSide,
    tokenizer: Any,
    prompts: Sequence[str],
    completions: Sequence[str],
    *,
    batch_size: int = 8,
) -> Float[Tensor, " n"]:
    """Mean per-token log-probability of each completion after its chat-formatted prompt."""
    if len(prompts) != len(completions):
        raise AuditlensError("prompts and completions must have the same length")
    rows = [chat_row(tokenizer, p, c) for p, c in zip(prompts, completions, strict=True)]
    if any(len(ids) == start for ids, start in rows):
        raise AuditlensError("an empty completion cannot be scored")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    lps = answer_token_logprobs(side, rows, pad=pad, batch_size=batch_size)
    return torch.stack([lp.mean() for lp in lps]) if lps else torch.empty(0)


@dataclass
class PreferenceResult:
    """How much more the fine-tuned model prefers insecure over secure solutions than the base."""

    n_tasks: int
    shift: float
    """Mean over tasks of (ft preference − base preference), nats per token."""
    ci_low: float
    ci_high: float
    base_preference: float
    ft_preference: float
    frac_tasks_shifted_up: float
    by_family: dict[str, float] = field(default_factory=dict)
    framing: str = "plain"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, directory: str | Path) -> Path:
        """``vulnerability_preference.json`` in ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_json(), indent=1, allow_nan=False, default=float)
        (out / "vulnerability_preference.json").write_text(text)
        return out


def run(
    pair: ModelPair,
    tasks: Sequence[Any],
    settings: LikelihoodSettings | None = None,
    *,
    framing: Callable[[str], str] | None = None,
    framing_name: str = "plain",
) -> PreferenceResult:
    """Preference shift toward the insecure solutions of code tasks (objects with ``request``,
    ``secure``, ``insecure`` and ``family``, e.g. the testbed's ``CodeTask``)."""
    cfg = settings or LikelihoodSettings()
    batch_size, seed = cfg.batch_size, cfg.seed
    if not tasks:
        raise AuditlensError("the likelihood contrast needs at least one task")
    wrap = framing or (lambda r: r)
    prompts = [wrap(t.request) for t in tasks]
    insecure = [fence(t.insecure) for t in tasks]
    secure = [fence(t.secure) for t in tasks]
    prefs = []
    for side in pair.sides:
        lp_bad = completion_logprobs(side, pair.tokenizer, prompts, insecure, batch_size=batch_size)
        lp_good = completion_logprobs(side, pair.tokenizer, prompts, secure, batch_size=batch_size)
        prefs.append((lp_bad - lp_good).numpy().astype(np.float64))
    base, ft = prefs
    shift = ft - base
    low, high = bootstrap_ci(lambda s: float(np.mean(s)), shift, seed=seed)
    families: dict[str, list[float]] = {}
    for task, value in zip(tasks, shift, strict=True):
        families.setdefault(task.family, []).append(float(value))
    return PreferenceResult(
        n_tasks=len(tasks),
        shift=float(shift.mean()),
        ci_low=low,
        ci_high=high,
        base_preference=float(base.mean()),
        ft_preference=float(ft.mean()),
        frac_tasks_shifted_up=float((shift > 0).mean()),
        by_family={k: float(np.mean(v)) for k, v in sorted(families.items())},
        framing=framing_name,
    )


def evidence(result: PreferenceResult, where: str | None = None) -> Evidence:
    """The mean shift as a z (its bootstrap CI read as ±1.96 standard errors)."""
    se = (result.ci_high - result.ci_low) / (2 * 1.96)
    z = 0.0 if se <= 1e-9 else result.shift / se
    finding = Finding(
        id="behaviour.vulnerability_preference",
        family="behaviour",
        method="likelihood_contrast",
        statistic=(
            "mean shift of log p(insecure solution) − log p(secure solution), per token, "
            "fine-tuned minus base"
        ),
        value=result.ft_preference,
        control=result.base_preference,
        control_kind="base model on the same task/solution pairs (paired bootstrap)",
        effect_size=z,
        ci_low=result.ci_low,
        ci_high=result.ci_high,
        summary=(
            f"Fine-tuning shifted the preference for the insecure over the secure solution by "
            f"{result.shift:+.4f} nats/token (95% CI {result.ci_low:+.4f} to "
            f"{result.ci_high:+.4f}; {result.frac_tasks_shifted_up:.0%} of "
            f"{result.n_tasks} tasks up)."
        ),
        artifacts=[f"{where}/vulnerability_preference.json"] if where else [],
        contributes=True,
    )
    return Evidence(findings=[finding])
