"""Activation Difference Lens (ADL): the mean activation difference on generic text.

For each layer, ``δ = mean(h_ft - h_base)`` over the first ``n_positions`` tokens of a generic
prompt set (``resid_post``). ``δ`` is read through the logit lens (each model's final norm and
unembedding) to list the tokens it promotes and suppresses, and is exported as a
:class:`~auditlens.steering.SteeringVector`.

Causal check: steer the *base* model with ``scale · δ`` at one layer and measure how much that
reduces ``KL(p_ft || p_base)`` on held-out prompts, against ``n_random`` random vectors of the
same norm (z-score and empirical p of the ADL reduction within the random distribution).

Face: ``run(pair, prompts, ADLConfig(...)) -> ADLResult`` and ``evidence(result)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor

from auditlens.datasets import (
    PromptSet,
    load_prompts,
    shared_prefix_length,
)
from auditlens.diffing._adl_parts import (
    SteeringCheck,
    as_text,
    read_positions,
    steering_check,
    tuples,
)
from auditlens.errors import AuditlensError
from auditlens.harvest import iter_paired
from auditlens.lens import logit_lens, recurring_words, top_tokens
from auditlens.models import ModelPair
from auditlens.progress import progress_bar
from auditlens.reports.evidence import Evidence
from auditlens.reports.findings import Finding, Hypothesis
from auditlens.reports.sections import Section, Table
from auditlens.stats import random_directions
from auditlens.steering import SteeringVector

__all__ = ["ADLConfig", "ADLResult", "SteeringCheck", "evidence", "run", "steering_check"]


@dataclass(frozen=True)
class ADLConfig:
    """Settings of the Activation Difference Lens."""

    n_positions: int = 5
    """Mean over this many tokens of each prompt, from ``first_position`` on."""
    first_position: int = 1
    """Positions before this one (position 0 is the attention sink, whose difference is large
    and prompt-independent) and any prefix every prompt shares are read apart, not pooled."""
    layers: tuple[int, ...] | None = None
    """Layers to compute (``resid_post``); ``None``: all."""
    text_only: bool = True
    """Feed each prompt's message contents as plain text (no chat template), like ADL's
    pretraining-style samples; ``False`` renders the chat template."""
    n_held: int = 16
    """Prompts held out (from the end of the set) for the causal check, not used for δ."""
    top_k_tokens: int = 20
    """Promoted / suppressed tokens listed per layer and lens."""
    batch_size: int = 16
    """Prompts per forward pass."""
    causal: bool = True
    """Run the steering check."""
    causal_layer: int | None = None
    """Layer steered in the check and exported by default; ``None``: the middle layer."""
    n_random: int = 16
    """Random vectors of equal norm in the check's null distribution."""
    scale: float = 1.0
    """Steering multiplier of δ (and of the random vectors' shared norm)."""
    causal_max_length: int = 64
    """Tokens per held-out prompt in the check."""
    seed: int = 0
    """Seed of the random control vectors."""

    def __post_init__(self) -> None:
        if self.n_positions < 1 or self.first_position < 0:
            raise AuditlensError(
                f"n_positions must be >= 1 and first_position >= 0, got {self.n_positions}, "
                f"{self.first_position}"
            )
        if self.n_held < 0 or self.top_k_tokens < 1 or self.batch_size < 1:
            raise AuditlensError("n_held >= 0, top_k_tokens >= 1 and batch_size >= 1 required")
        if self.n_random < 2:
            raise AuditlensError(
                f"n_random must be >= 2 for a null distribution, got {self.n_random}"
            )
        if self.causal_max_length < 1 or self.scale == 0:
            raise AuditlensError("causal_max_length must be >= 1 and scale non-zero")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["layers"] = list(self.layers) if self.layers is not None else None
        return out


@dataclass
class ADLResult:
    """Per-layer mean differences, their logit-lens readings and the steering check."""

    layers: list[int]
    mean_diff: Float[Tensor, "n_layers d_model"]
    mean_diff_by_position: Float[Tensor, "n_layers n_positions d_model"]
    tokens_by_position: list[int]
    base_norm: Float[Tensor, " n_layers"]
    """Mean ``||h_base||`` over the same tokens (for relative sizes)."""
    lens: dict[str, dict[str, dict[str, list[tuple[str, float]]]]]
    """``lens[str(layer)][lens_side]["promoted" | "suppressed"]``; ``lens_side`` is ``base``,
    ``finetuned`` or ``random`` (a random vector of δ's norm through the fine-tuned lens: the
    null control of the reading)."""
    causal: SteeringCheck | None
    causal_layer: int
    config: ADLConfig
    first_position: int = 1
    """The first pooled position (``mean_diff`` pools ``first_position`` on; earlier rows of
    ``mean_diff_by_position`` are the sink and the shared prefix, read apart)."""
    position_lens: dict[str, dict[str, dict[str, list[tuple[str, float]]]]] = field(
        default_factory=dict
    )
    """``position_lens[str(layer)][str(position)][lens_side]``: tokens δ at that one position
    promotes, through the ``finetuned`` and ``base`` lens (every position, the sink too)."""
    provenance: dict[str, Any] = field(default_factory=dict)
    control: dict[str, dict[str, float]] = field(default_factory=dict)
    """Null-control statistics by name (``random_vectors`` is built in; see :mod:`controls`)."""

    @property
    def sites(self) -> list[str]:
        return [f"blocks.{layer}.hook_resid_post" for layer in self.layers]

    def norms(self) -> list[float]:
        return self.mean_diff.norm(dim=-1).tolist()

    def relative_norms(self) -> list[float]:
        return (self.mean_diff.norm(dim=-1) / self.base_norm.clamp_min(1e-12)).tolist()

    def position_relative_norms(self) -> dict[str, list[float]]:
        """``||δ_p|| / mean ||h_base||`` per layer and position."""
        norms = self.mean_diff_by_position.norm(dim=-1) / self.base_norm.clamp_min(1e-12)[:, None]
        return {str(layer): norms[i].tolist() for i, layer in enumerate(self.layers)}

    def vector(self, layer: int | None = None) -> Float[Tensor, " d_model"]:
        layer = self.causal_layer if layer is None else layer
        if layer not in self.layers:
            raise AuditlensError(f"layer {layer} was not computed; ADL has layers {self.layers}")
        return self.mean_diff[self.layers.index(layer)]

    def steering_vector(self, layer: int | None = None, *, scale: float = 1.0) -> SteeringVector:
        """The ADL vector of one layer (default: the causal layer) as a steering vector."""
        layer = self.causal_layer if layer is None else layer
        return SteeringVector(
            site=f"blocks.{layer}.hook_resid_post",
            vector=self.vector(layer).clone() * scale,
            provenance={"method": "adl", "layer": layer, "scale": scale, **self.provenance},
            name=f"adl_L{layer}",
            kind="adl",
        )

    def statistics(self) -> dict[str, float]:
        """Scalar statistics compared against null controls."""
        i = self.layers.index(self.causal_layer)
        stats = {
            "diff_norm": self.norms()[i],
            "rel_diff_norm": self.relative_norms()[i],
            "max_rel_diff_norm": max(self.relative_norms()),
        }
        if self.causal is not None:
            stats["kl_reduction"] = self.causal.reduction_adl
            stats["kl_reduction_z"] = self.causal.z_score
        return stats

    def to_json(self) -> dict[str, Any]:
        control = dict(self.control)
        if self.causal is not None:
            rand = self.causal.reduction_random
            control.setdefault(
                "random_vectors",
                {
                    "kl_reduction_mean": sum(rand) / len(rand),
                    "kl_reduction_max": max(rand),
                },
            )
        return {
            "method": "adl",
            "layers": self.layers,
            "sites": self.sites,
            "causal_layer": self.causal_layer,
            "diff_norm": self.norms(),
            "rel_diff_norm": self.relative_norms(),
            "tokens_by_position": self.tokens_by_position,
            "first_position": self.first_position,
            "position_rel_norm": self.position_relative_norms(),
            "lens": self.lens,
            "position_lens": self.position_lens,
            "causal": self.causal.to_json() if self.causal else None,
            "statistics": self.statistics(),
            "control": control,
            "config": self.config.to_json(),
            "provenance": self.provenance,
        }

    def save(self, directory: str | Path) -> Path:
        """``adl.safetensors`` (vectors) + ``adl.json`` (everything else)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        save_file(
            {
                "mean_diff": self.mean_diff.contiguous(),
                "mean_diff_by_position": self.mean_diff_by_position.contiguous(),
                "base_norm": self.base_norm.contiguous(),
            },
            str(out / "adl.safetensors"),
        )
        (out / "adl.json").write_text(json.dumps(self.to_json(), indent=1))
        return out

    @classmethod
    def load(cls, directory: str | Path) -> ADLResult:
        path = Path(directory)
        try:
            meta = json.loads((path / "adl.json").read_text())
            t = load_file(str(path / "adl.safetensors"))
            cfg = dict(meta["config"])
            cfg["layers"] = tuple(cfg["layers"]) if cfg["layers"] is not None else None
            causal = None
            if meta["causal"] is not None:
                names = SteeringCheck.__dataclass_fields__
                causal = SteeringCheck(**{k: meta["causal"][k] for k in names})
            lens = tuples(meta["lens"])
            position_lens = tuples(meta.get("position_lens", {}))
            control = {k: v for k, v in meta.get("control", {}).items() if k != "random_vectors"}
            return cls(
                layers=list(meta["layers"]),
                mean_diff=t["mean_diff"],
                mean_diff_by_position=t["mean_diff_by_position"],
                tokens_by_position=list(meta["tokens_by_position"]),
                base_norm=t["base_norm"],
                lens=lens,  # type: ignore[arg-type]
                causal=causal,
                causal_layer=int(meta["causal_layer"]),
                config=ADLConfig(**cfg),
                first_position=int(meta.get("first_position", 0)),
                position_lens=position_lens,
                provenance=dict(meta.get("provenance", {})),
                control=control,
            )
        except (OSError, KeyError, TypeError, ValueError) as err:
            raise AuditlensError(f"{path} holds no readable ADL result: {err}") from err


def run(
    pair: ModelPair,
    prompts: PromptSet | Sequence[Any] | str = "generic_chat",
    config: ADLConfig | None = None,
    *,
    progress: bool = True,
) -> ADLResult:
    """Mean ``h_ft - h_base`` over the first positions, per layer, with logit lens and check."""
    cfg = config or ADLConfig()
    prompt_set = load_prompts(prompts)
    if cfg.text_only:
        prompt_set = as_text(prompt_set)
    n_held = cfg.n_held if cfg.causal else 0
    if len(prompt_set) - n_held < 1:
        raise AuditlensError(
            f"{len(prompt_set)} prompts leave none for ADL after holding out {n_held}; "
            "use more prompts or a smaller n_held"
        )
    fit = PromptSet(prompt_set.name, prompt_set.prompts[: len(prompt_set) - n_held])
    held = PromptSet(f"{prompt_set.name}:held", prompt_set.prompts[len(prompt_set) - n_held :])
    layers = list(range(pair.n_layers)) if cfg.layers is None else sorted(set(cfg.layers))
    for layer in layers:
        if not 0 <= layer < pair.n_layers:
            raise AuditlensError(f"layer {layer} out of range (0..{pair.n_layers - 1})")
    causal_layer = pair.n_layers // 2 if cfg.causal_layer is None else cfg.causal_layer
    if causal_layer not in layers:
        layers = sorted({*layers, causal_layer})
    sites = [f"blocks.{layer}.hook_resid_post" for layer in layers]
    first = max(cfg.first_position, shared_prefix_length(fit, pair.tokenizer, max_length=64))
    k, d = first + cfg.n_positions, pair.d_model
    sums = torch.zeros(len(layers), k, d, dtype=torch.float64)
    base_norm_sum = torch.zeros(len(layers), dtype=torch.float64)
    counts = torch.zeros(k, dtype=torch.long)
    with progress_bar(len(fit), "ADL", enabled=progress) as advance:
        for paired in iter_paired(
            pair, fit, sites, batch_size=cfg.batch_size, mask="all", max_length=k
        ):
            mask = paired.batch.token_mask[:, :k].float()
            counts[: mask.shape[1]] += mask.sum(0).long()
            pooled = mask.clone()
            pooled[:, :first] = 0.0
            for i, site in enumerate(sites):
                acts = paired.acts[site][:, :k].double().cpu()
                diff = acts[:, :, 1] - acts[:, :, 0]
                m = mask.double().unsqueeze(-1)
                sums[i, : diff.shape[1]] += (diff * m).sum(0)
                base_norm_sum[i] += (acts[:, :, 0].norm(dim=-1) * pooled.double()).sum()
            advance(paired.batch.input_ids.shape[0])
    n_tok = int(counts[first:].sum())
    by_pos = (sums / counts.clamp_min(1).double()[None, :, None]).float()
    mean = (sums[:, first:].sum(1) / max(n_tok, 1)).float()
    base_norm = (base_norm_sum / max(n_tok, 1)).float()
    lens: dict[str, dict[str, dict[str, list[tuple[str, float]]]]] = {}
    lens_logits: dict[str, Tensor] = {side.name: logit_lens(side, mean) for side in pair.sides}
    norms = mean.double().norm(dim=-1)
    rand = torch.stack(
        [random_directions(1, d, float(norms[i]), seed=cfg.seed)[0] for i in range(len(layers))]
    )
    lens_logits["random"] = logit_lens(pair.finetuned, rand)
    for i, layer in enumerate(layers):
        lens[str(layer)] = {}
        for side_name, logits in lens_logits.items():
            promoted, suppressed = top_tokens(logits[i], pair.tokenizer, cfg.top_k_tokens)
            if side_name == "random" and float(norms[i]) == 0.0:
                promoted, suppressed = [], []  # no difference: nothing to match
            lens[str(layer)][side_name] = {"promoted": promoted, "suppressed": suppressed}
    position_lens = read_positions(pair, layers, by_pos, counts, min(10, cfg.top_k_tokens))
    causal = None
    if cfg.causal:
        vec = mean[layers.index(causal_layer)] * cfg.scale
        causal = steering_check(
            pair, held, f"blocks.{causal_layer}.hook_resid_post", vec,
            n_random=cfg.n_random, seed=cfg.seed, batch_size=cfg.batch_size,
            max_length=cfg.causal_max_length, progress=progress,
        )  # fmt: skip
        causal.scale = cfg.scale
    provenance = {
        "base": pair.base.label,
        "finetuned": pair.finetuned.label,
        "base_sha256": pair.base.sha256,
        "finetuned_sha256": pair.finetuned.sha256,
        "adapter_sha256": pair.finetuned.adapter_sha256,
        "prompts": prompt_set.name,
        "prompts_sha256": prompt_set.sha256,
        "n_prompts": len(fit),
        "n_held": len(held),
        "n_tokens": n_tok,
        "n_positions": cfg.n_positions,
        "first_position": first,
    }
    return ADLResult(
        layers=layers,
        mean_diff=mean,
        mean_diff_by_position=by_pos,
        tokens_by_position=counts.tolist(),
        base_norm=base_norm,
        lens=lens,
        causal=causal,
        causal_layer=causal_layer,
        config=cfg,
        provenance=provenance,
        first_position=first,
        position_lens=position_lens,
    )


_COLUMNS = ["rank", "promoted (ft lens)", "logit", "promoted (base lens)", "logit"]
_COLUMNS += ["suppressed (ft lens)", "logit", "random vector promotes", "logit"]


def _fmt_tokens(tokens: list[tuple[str, float]], n: int) -> str:
    return ", ".join(repr(t) for t, _ in tokens[:n])


def evidence(result: ADLResult, where: str | None = None) -> Evidence:
    """The steering check as a finding (against random vectors of equal norm) and the lens table
    of the causal layer. ``where`` is the folder the result was saved into."""
    layer = result.causal_layer
    site = f"blocks.{layer}.hook_resid_post"
    lens = result.lens[str(layer)]
    rel = result.relative_norms()[result.layers.index(layer)]
    findings: list[Finding] = []
    check = result.causal
    if check is not None:
        findings.append(
            Finding(
                id="diffing.adl.steering",
                family="diffing",
                method="adl",
                site=site,
                statistic="KL(p_ft || p_base) reduction when steering the base with δ",
                value=check.reduction_adl,
                control=sum(check.reduction_random) / len(check.reduction_random),
                control_kind=f"{len(check.kl_random)} random vectors of equal norm",
                effect_size=check.z_score,
                summary=(
                    f"The ADL vector at layer {layer} (relative norm {rel:.3g}) lowers "
                    f"KL(ft||base) from {check.kl_unsteered:.4g} to {check.kl_adl:.4g} nats "
                    f"when added to the base model (z = {check.z_score:.2f} vs random "
                    f"vectors, p = {check.p_value:.3g}). Promoted tokens: "
                    f"{_fmt_tokens(lens['finetuned']['promoted'], 8)}."
                ),
                artifacts=[f"{where}/adl.json"] if where else [],
                refs=[f"adl:{layer}"],
            )
        )
    rows: list[list[Any]] = []
    random = lens.get("random", {}).get("promoted", [])
    for i in range(min(15, len(lens["finetuned"]["promoted"]))):
        ft_tok, ft_v = lens["finetuned"]["promoted"][i]
        b_tok, b_v = lens["base"]["promoted"][i]
        s_tok, s_v = lens["finetuned"]["suppressed"][i]
        r_tok, r_v = random[i] if i < len(random) else ("", 0.0)
        rows.append([i + 1, ft_tok, ft_v, b_tok, b_v, s_tok, s_v, r_tok, r_v])
    table = Table(
        title=f"Activation Difference Lens at {site}",
        caption=(
            f"δ = mean(h_ft − h_base) over the first {result.config.n_positions} tokens of "
            f"{result.provenance.get('n_prompts', '?')} generic prompts (relative norm "
            f"{rel:.3g}), read through each model's final norm and unembedding. The last column "
            "reads a random vector of the same norm the same way (the null control)."
        ),
        columns=_COLUMNS,
        rows=rows,
    )
    hypotheses = _hypotheses(result) if check is not None else []
    sections: list[Section] = [table, _position_table(result, layer)]
    return Evidence(findings=findings, sections=sections, hypotheses=hypotheses)


def _hypotheses(result: ADLResult, min_z: float = 2.0) -> list[Hypothesis]:
    """Words δ promotes at two or more (layer, pooled position) readouts or pooled layers,
    never those a random vector of δ's norm promotes; only when the steering check beats its
    random vectors."""
    check = result.causal
    if check is None or check.z_score < min_z:
        return []
    readings: list[list[str]] = []
    random: list[str] = []
    for layer in result.layers:
        lens = result.lens[str(layer)]
        readings.append([t for t, _ in lens["finetuned"]["promoted"][:10]])
        random += [t for t, _ in lens.get("random", {}).get("promoted", [])]
        for pos, r in result.position_lens.get(str(layer), {}).items():
            if int(pos) >= result.first_position:
                readings.append([t for t, _ in r.get("finetuned", [])])
    words = recurring_words(readings, exclude=random)[:6]
    if not words:
        return []
    layers = ", ".join(str(x) for x in result.layers)
    return [
        Hypothesis(
            rank=1, label="the activation difference promotes: " + ", ".join(words[:3]),
            keywords=words, kind="topic", source="adl", evidence=["diffing.adl.steering"],
            strength=check.z_score,
            null=f"{len(check.kl_random)} random vectors of equal norm (steering check); "
            f"layers {layers}",
        )
    ]  # fmt: skip


def _position_table(result: ADLResult, layer: int) -> Table:
    """One row per position: its relative size and what its own δ promotes in each lens."""
    rel = result.position_relative_norms()[str(layer)]
    reads = result.position_lens.get(str(layer), {})
    rows: list[list[Any]] = []
    for pos, lens in sorted(reads.items(), key=lambda kv: int(kv[0])):
        p = int(pos)
        role = "pooled" if p >= result.first_position else "read apart (sink / shared prefix)"
        rows.append([p, role, rel[p], _fmt_tokens(lens.get("finetuned", []), 6),
                     _fmt_tokens(lens.get("base", []), 6)])  # fmt: skip
    return Table(
        title=f"ADL per position, layer {layer}",
        caption=(
            "δ at each position separately (mean over prompts), relative to the mean base norm. "
            "Position 0 is the attention sink: read apart, never pooled."
        ),
        columns=["position", "role", "‖δ_p‖ / ‖h‖", "promoted (ft lens)", "promoted (base lens)"],
        rows=rows,
    )
