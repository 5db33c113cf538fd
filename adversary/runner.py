"""One perturbation runner: any perturbation -> generations -> the same scorers, with controls.

A perturbation is anything with ``name``, ``kind`` and ``apply(side, arch)`` returning a
context manager (steering vectors, MELBO vectors, activation noise, weight noise), or any
object with ``.site`` and ``.vector`` (e.g. an ADL vector). Every generation goes through the
same scorers (Bandit's insecure-code label by default, a probe scorer, ...), an optional
behaviour detector, and KL from the unperturbed model over the prompt and the first generated
tokens. Each steering vector gets random vectors of matched norm at the same site as controls.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from auditlens.adversary._jsonsafe import json_safe
from auditlens.datasets import Prompt, PromptSet, load_prompts
from auditlens.errors import AuditlensError
from auditlens.generate import generate
from auditlens.judges.code import BanditScorer
from auditlens.lens import token_kl
from auditlens.models import ModelPair, ModelSide
from auditlens.progress import progress_bar
from auditlens.sites import ArchSpec
from auditlens.stats import bootstrap_ci, random_directions, wilson_interval
from auditlens.steering import SteeringVector, as_steering_vector, mean_activation_norm

__all__ = [
    "Perturbation",
    "PerturbationRow",
    "PerturbationTable",
    "ScoreSummary",
    "Scorer",
    "run_perturbations",
    "scorer_name",
]

SideName = Literal["base", "finetuned"]


@runtime_checkable
class Scorer(Protocol):
    """Scores texts; NaN marks an item the scorer cannot judge (excluded from its rate).

    A scorer whose ``score`` also takes ``prompts=`` (e.g. ``auditlens.probes.ProbeScorer``)
    gets each text's prompt; one with ``kind`` instead of ``name`` is named ``probe_{kind}``.
    """

    name: str

    def score(self, texts: Sequence[str]) -> Sequence[float]: ...


def scorer_name(scorer: Any) -> str:
    """A scorer's table name: ``name``, else ``probe_{kind}``, else its class name."""
    name = getattr(scorer, "name", None)
    if isinstance(name, str) and name:
        return name
    kind = getattr(scorer, "kind", None)
    return f"probe_{kind}" if isinstance(kind, str) and kind else type(scorer).__name__


def _run_scorer(scorer: Any, texts: list[str], prompts: PromptSet) -> np.ndarray:
    try:
        takes_prompts = "prompts" in inspect.signature(scorer.score).parameters
    except (TypeError, ValueError):
        takes_prompts = False
    if takes_prompts:
        requests = [p if p.messages is not None else p.text for p in prompts.prompts]
        values = scorer.score(texts, prompts=requests)
    else:
        values = scorer.score(texts)
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.shape[0] != len(texts):
        name = scorer_name(scorer)
        raise AuditlensError(f"scorer {name} returned {arr.shape[0]} scores for {len(texts)} texts")
    return arr


@runtime_checkable
class RelativeNoise(Protocol):
    """A perturbation whose scale is relative to the site's mean activation norm, which the
    runner measures (once per site) on the perturbed side when it is not given."""

    site: str
    relative: bool
    mean_norm: float | None

    def with_mean_norm(self, mean_norm: float) -> Any: ...


@runtime_checkable
class Perturbation(Protocol):
    """Anything the runner can apply: a context manager over one model side."""

    name: str
    kind: str

    def apply(self, side: ModelSide, arch: ArchSpec) -> Any: ...


@dataclass(frozen=True)
class ScoreSummary:
    """One scorer over one row: a rate with a Wilson CI (0/1 scores) or a bootstrap mean."""

    name: str
    n: int
    """Items the scorer judged (non-NaN)."""
    n_missing: int
    """Items scored NaN (e.g. no parseable code)."""
    mean: float
    ci_low: float
    ci_high: float
    binary: bool


def _summarise(name: str, values: Sequence[float], *, seed: int) -> ScoreSummary:
    arr = np.asarray(values, dtype=np.float64)
    valid = arr[~np.isnan(arr)]
    missing = int(arr.size - valid.size)
    if valid.size == 0:
        return ScoreSummary(name, 0, missing, math.nan, math.nan, math.nan, True)
    if np.isin(valid, (0.0, 1.0)).all():
        k = int(valid.sum())
        low, high = wilson_interval(k, int(valid.size))
        return ScoreSummary(name, int(valid.size), missing, k / valid.size, low, high, True)
    low, high = bootstrap_ci(lambda x: float(np.mean(x)), valid, seed=seed)
    return ScoreSummary(name, int(valid.size), missing, float(valid.mean()), low, high, False)


@dataclass
class PerturbationRow:
    """One perturbation (or control, or the unperturbed model) over the prompt set."""

    name: str
    kind: str
    """``unperturbed``, ``random_control``, or the perturbation's own kind."""
    n: int
    control_of: list[str] = field(default_factory=list)
    """For random controls: the perturbations they control for."""
    site: str | None = None
    norm: float | None = None
    """Applied steering norm (steering rows and their controls)."""
    sigma: float | None = None
    seed: int | None = None
    detector_hits: int | None = None
    detector_rate: float | None = None
    detector_ci_low: float | None = None
    detector_ci_high: float | None = None
    scores: dict[str, ScoreSummary] = field(default_factory=dict)
    kl_mean: float | None = None
    """Mean KL(perturbed || unperturbed) per position over prompt + first generated tokens."""
    kl_max: float | None = None
    generations: list[str] = field(default_factory=list)

    def to_json(self, *, include_generations: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not include_generations:
            out.pop("generations")
        return json_safe(out)  # type: ignore[no-any-return]


@dataclass
class PerturbationTable:
    """Rows for the unperturbed model, each perturbation and its matched-norm controls."""

    side: str
    prompts_sha256: str
    n_prompts: int
    detector: str | None
    scorers: list[str]
    kl_tokens: int
    rows: list[PerturbationRow] = field(default_factory=list)

    def row(self, name: str) -> PerturbationRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise AuditlensError(f"no row named {name!r}")

    @property
    def baseline(self) -> PerturbationRow | None:
        return next((r for r in self.rows if r.kind == "unperturbed"), None)

    def controls_for(self, name: str) -> list[PerturbationRow]:
        return [r for r in self.rows if name in r.control_of]

    def perturbation_rows(self) -> list[PerturbationRow]:
        return [r for r in self.rows if r.kind not in ("unperturbed", "random_control")]

    def to_json(self, *, include_generations: bool = False) -> dict[str, Any]:
        return {
            "side": self.side,
            "prompts_sha256": self.prompts_sha256,
            "n_prompts": self.n_prompts,
            "detector": self.detector,
            "scorers": self.scorers,
            "kl_tokens": self.kl_tokens,
            "rows": [r.to_json(include_generations=include_generations) for r in self.rows],
        }


def _coerce(p: Any) -> Any:
    if isinstance(p, Perturbation):
        return p
    return as_steering_vector(p)


def _render(prompt: Prompt, tokenizer: Any) -> str:
    if prompt.messages is None:
        assert prompt.text is not None
        return prompt.text
    msgs = [{"role": r, "content": c} for r, c in prompt.messages]
    if msgs[-1]["role"] == "assistant":
        text = tokenizer.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
        return str(text) + msgs[-1]["content"]
    return str(tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))


def _kl_batches(
    tokenizer: Any,
    prompts: PromptSet,
    completions: Sequence[str],
    kl_tokens: int,
    batch_size: int,
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Right-padded (input_ids, attention_mask, prompt_lengths) of prompt + first tokens."""
    rows = []
    for prompt, completion in zip(prompts.prompts, completions, strict=True):
        text = _render(prompt, tokenizer)
        ids = list(tokenizer(text, add_special_tokens=prompt.messages is None)["input_ids"])
        gen = list(tokenizer(completion, add_special_tokens=False)["input_ids"])[:kl_tokens]
        rows.append((ids + gen, len(ids)))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = []
    for lo in range(0, len(rows), batch_size):
        chunk = rows[lo : lo + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        attn = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, (ids, _) in enumerate(chunk):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            attn[i, : len(ids)] = 1
        out.append((input_ids, attn, torch.tensor([n for _, n in chunk], dtype=torch.long)))
    return out


def _kl(
    side: ModelSide,
    arch: ArchSpec,
    perturbation: Any,
    batches: list[tuple[Tensor, Tensor, Tensor]],
) -> tuple[float, float]:
    model = side.hf
    device = next(model.parameters()).device
    values = []
    for ids, attn, lengths in batches:
        ids, attn = ids.to(device), attn.to(device)
        with side.active(), torch.no_grad():
            with perturbation.apply(side, arch) as handle:
                if hasattr(handle, "prompt_lengths"):
                    handle.prompt_lengths = lengths
                perturbed = model(input_ids=ids, attention_mask=attn).logits
            clean = model(input_ids=ids, attention_mask=attn).logits
        kl = token_kl(perturbed, clean)
        values.append(kl[attn.bool()].float().cpu())
    flat = torch.cat(values)
    return float(flat.mean()), float(flat.max())


def run_perturbations(
    pair: ModelPair,
    prompts: PromptSet | Sequence[Any] | str,
    perturbations: Sequence[Any],
    *,
    side: SideName = "finetuned",
    scorers: Sequence[Any] | None = None,
    detector: Callable[[str], bool] | None = None,
    detector_name: str = "detector",
    n_controls: int = 4,
    control_seed: int = 0,
    kl_tokens: int = 8,
    max_new_tokens: int = 60,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 8,
    include_baseline: bool = True,
) -> PerturbationTable:
    """Generate under each perturbation and score every generation the same way.

    ``scorers`` default to ``[BanditScorer()]``. Steering perturbations at the same site, mode,
    token range and applied norm share ``n_controls`` random vectors of exactly that norm
    (seeded from ``control_seed``). Rates carry 95% Wilson intervals. Generation uses the
    same ``seed`` for every row, so sampled rows share their random numbers.
    """
    prompt_set = load_prompts(prompts)
    chosen = pair.finetuned if side == "finetuned" else pair.base
    scorer_list = list(scorers) if scorers is not None else [BanditScorer()]
    if n_controls < 0 or kl_tokens < 0:
        raise AuditlensError("n_controls and kl_tokens must be >= 0")
    items = [_coerce(p) for p in perturbations]
    items = _resolve_noise(items, chosen, pair, prompt_set)
    names = [p.name for p in items]
    if len(set(names)) != len(names) or "unperturbed" in names:
        raise AuditlensError("perturbation names must be unique and not 'unperturbed'")
    plan: list[tuple[Any, list[str]]] = [(p, []) for p in items]
    plan += _controls(items, n_controls, control_seed, pair.d_model)
    table = PerturbationTable(
        side=chosen.name,
        prompts_sha256=prompt_set.sha256,
        n_prompts=len(prompt_set),
        detector=detector_name if detector is not None else None,
        scorers=[scorer_name(s) for s in scorer_list],
        kl_tokens=kl_tokens,
    )
    gen_opts: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "seed": seed,
        "batch_size": batch_size,
    }
    total = len(plan) + int(include_baseline)
    with progress_bar(total, "perturbations") as advance:
        if include_baseline:
            texts = generate(chosen, pair.tokenizer, prompt_set, **gen_opts)
            row = PerturbationRow("unperturbed", "unperturbed", len(texts), kl_mean=0.0, kl_max=0.0)
            table.rows.append(_score_row(row, texts, prompt_set, scorer_list, detector, seed))
            advance(1)
        for perturbation, control_of in plan:
            with perturbation.apply(chosen, pair.arch):
                texts = generate(chosen, pair.tokenizer, prompt_set, **gen_opts)
            row = _describe(perturbation, control_of, len(texts))
            batches = _kl_batches(pair.tokenizer, prompt_set, texts, kl_tokens, batch_size)
            row.kl_mean, row.kl_max = _kl(chosen, pair.arch, perturbation, batches)
            table.rows.append(_score_row(row, texts, prompt_set, scorer_list, detector, seed))
            advance(1)
    return table


def _resolve_noise(
    items: list[Any], side: ModelSide, pair: ModelPair, prompts: PromptSet
) -> list[Any]:
    norms: dict[str, float] = {}
    out = []
    for p in items:
        if isinstance(p, RelativeNoise) and p.relative and p.mean_norm is None:
            if p.site not in norms:
                norms[p.site] = mean_activation_norm(
                    side, pair.arch, pair.tokenizer, prompts, p.site
                )
            p = p.with_mean_norm(norms[p.site])
        out.append(p)
    return out


def _controls(
    items: Sequence[Any], n_controls: int, control_seed: int, d_model: int
) -> list[tuple[SteeringVector, list[str]]]:
    """Matched-norm random vectors, shared by steering rows with the same site/mode/norm.

    Norms within a relative 1e-5 (float32 round-off of one radius) count as the same.
    """
    groups: dict[tuple[str, str, str, float, float], list[str]] = {}
    for p in items:
        if isinstance(p, SteeringVector) and p.kind != "random_control" and n_controls > 0:
            norm = float(p.vector.detach().double().norm())
            key = next(
                (
                    k
                    for k in groups
                    if k[:4] == (p.site, p.mode, p.tokens, p.coeff)
                    and math.isclose(k[4], norm, rel_tol=1e-5)
                ),
                (p.site, p.mode, p.tokens, p.coeff, norm),
            )
            groups.setdefault(key, []).append(p.name)
    out = []
    for g, ((site, mode, tokens, coeff, norm), members) in enumerate(groups.items()):
        vectors = random_directions(n_controls, d_model, norm, seed=control_seed + g)
        for j, vector in enumerate(vectors):
            control = SteeringVector(
                site,
                vector,
                coeff=coeff,
                mode=mode,  # type: ignore[arg-type]
                tokens=tokens,  # type: ignore[arg-type]
                name=f"random_{j}@{site}:norm={abs(coeff) * norm:.4g}:group={g}",
                kind="random_control",
                provenance={"seed": control_seed + g, "index": j},
            )
            out.append((control, list(members)))
    return out


def _describe(p: Any, control_of: list[str], n: int) -> PerturbationRow:
    row = PerturbationRow(p.name, p.kind, n, control_of=control_of)
    row.site = getattr(p, "site", None)
    if isinstance(p, SteeringVector):
        row.norm = p.norm
    sigma, seed = getattr(p, "sigma", None), getattr(p, "seed", None)
    row.sigma = float(sigma) if sigma is not None else None
    row.seed = int(seed) if seed is not None else None
    return row


def _score_row(
    row: PerturbationRow,
    texts: list[str],
    prompts: PromptSet,
    scorers: Sequence[Any],
    detector: Callable[[str], bool] | None,
    seed: int,
) -> PerturbationRow:
    row.generations = list(texts)
    for scorer in scorers:
        name = scorer_name(scorer)
        row.scores[name] = _summarise(name, list(_run_scorer(scorer, texts, prompts)), seed=seed)
    if detector is not None:
        hits = sum(bool(detector(t)) for t in texts)
        row.detector_hits = hits
        row.detector_rate = hits / len(texts) if texts else math.nan
        row.detector_ci_low, row.detector_ci_high = wilson_interval(hits, len(texts))
    return row
