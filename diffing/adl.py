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

from auditlens.datasets import Prompt, PromptSet, iter_token_batches, load_prompts
from auditlens.errors import AuditlensError
from auditlens.harvest import iter_paired
from auditlens.hooks import add_vector
from auditlens.lens import logit_lens, token_kl, top_tokens
from auditlens.models import ModelPair
from auditlens.progress import progress_bar
from auditlens.reports.evidence import Evidence
from auditlens.reports.findings import Finding
from auditlens.reports.sections import Table
from auditlens.stats import random_directions
from auditlens.steering import SteeringVector

__all__ = ["ADLConfig", "ADLResult", "SteeringCheck", "evidence", "run", "steering_check"]


@dataclass(frozen=True)
class ADLConfig:
    """Settings of the Activation Difference Lens."""

    n_positions: int = 5
    """Mean over the first this many tokens of each prompt."""
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
        if self.n_positions < 1:
            raise AuditlensError(f"n_positions must be >= 1, got {self.n_positions}")
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
class SteeringCheck:
    """Mean ``KL(p_ft || p_base_steered)`` with the ADL vector vs random vectors of equal norm."""

    site: str
    scale: float
    vector_norm: float
    n_tokens: int
    kl_unsteered: float
    kl_adl: float
    kl_random: list[float]

    @property
    def reduction_adl(self) -> float:
        return self.kl_unsteered - self.kl_adl

    @property
    def reduction_random(self) -> list[float]:
        return [self.kl_unsteered - k for k in self.kl_random]

    @property
    def z_score(self) -> float:
        r = torch.tensor(self.reduction_random, dtype=torch.float64)
        std = float(r.std()) if r.numel() > 1 else 0.0
        return (self.reduction_adl - float(r.mean())) / max(std, 1e-12)

    @property
    def p_value(self) -> float:
        """Empirical one-sided p: ``(1 + #{random >= ADL}) / (N + 1)``."""
        n_ge = sum(1 for r in self.reduction_random if r >= self.reduction_adl)
        return (1 + n_ge) / (len(self.kl_random) + 1)

    def to_json(self) -> dict[str, Any]:
        rand = self.reduction_random
        mean = sum(rand) / len(rand) if rand else 0.0
        return {
            **asdict(self),
            "reduction_adl": self.reduction_adl,
            "reduction_random_mean": mean,
            "reduction_random_max": max(rand) if rand else 0.0,
            "z_score": self.z_score,
            "p_value": self.p_value,
        }


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
            "lens": self.lens,
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
            lens = {
                layer: {
                    side: {kind: [tuple(x) for x in toks] for kind, toks in d.items()}
                    for side, d in sides.items()
                }
                for layer, sides in meta["lens"].items()
            }
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
                provenance=dict(meta.get("provenance", {})),
                control=control,
            )
        except (OSError, KeyError, TypeError, ValueError) as err:
            raise AuditlensError(f"{path} holds no readable ADL result: {err}") from err


def _as_text(prompts: PromptSet) -> PromptSet:
    items = []
    for p in prompts.prompts:
        if p.messages is None:
            items.append(p)
        else:
            items.append(Prompt(text="\n\n".join(c for _, c in p.messages if c.strip())))
    return PromptSet(f"{prompts.name}:text", tuple(items))


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
        prompt_set = _as_text(prompt_set)
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
    k, d = cfg.n_positions, pair.d_model
    sums = torch.zeros(len(layers), k, d, dtype=torch.float64)
    base_norm_sum = torch.zeros(len(layers), dtype=torch.float64)
    counts = torch.zeros(k, dtype=torch.long)
    with progress_bar(len(fit), "ADL", enabled=progress) as advance:
        for paired in iter_paired(
            pair, fit, sites, batch_size=cfg.batch_size, mask="all", max_length=k
        ):
            mask = paired.batch.token_mask[:, :k].float()
            counts[: mask.shape[1]] += mask.sum(0).long()
            for i, site in enumerate(sites):
                acts = paired.acts[site][:, :k].double().cpu()
                diff = acts[:, :, 1] - acts[:, :, 0]
                m = mask.double().unsqueeze(-1)
                sums[i, : diff.shape[1]] += (diff * m).sum(0)
                base_norm_sum[i] += (acts[:, :, 0].norm(dim=-1) * mask.double()).sum()
            advance(paired.batch.input_ids.shape[0])
    n_tok = int(counts.sum())
    by_pos = (sums / counts.clamp_min(1).double()[None, :, None]).float()
    mean = (sums.sum(1) / max(n_tok, 1)).float()
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
        "n_positions": k,
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
    )


@torch.no_grad()
def steering_check(
    pair: ModelPair,
    prompts: PromptSet | Sequence[Any] | str,
    site: str,
    vector: Float[Tensor, " d_model"],
    *,
    n_random: int = 16,
    seed: int = 0,
    batch_size: int = 16,
    max_length: int = 64,
    progress: bool = True,
) -> SteeringCheck:
    """How much adding ``vector`` to the base model lowers mean ``KL(p_ft || p_base)``,
    beside ``n_random`` random vectors of the same norm."""
    prompt_set = load_prompts(prompts)
    controls = random_directions(n_random, vector.numel(), float(vector.double().norm()), seed=seed)
    vectors = [vector.float(), *controls]
    kl_sums = torch.zeros(len(vectors) + 1, dtype=torch.float64)
    n_tok = 0
    device = pair.device
    with progress_bar(len(prompt_set), "ADL steering check", enabled=progress) as advance:
        for batch in iter_token_batches(
            prompt_set, pair.tokenizer, batch_size=batch_size, max_length=max_length
        ):
            ids, attn = batch.input_ids.to(device), batch.attention_mask.to(device)
            mask = (batch.token_mask & batch.attention_mask.bool()).to(device)
            with pair.finetuned.active():
                ft = pair.finetuned.hf(input_ids=ids, attention_mask=attn).logits
            with pair.base.active():
                base = pair.base.hf(input_ids=ids, attention_mask=attn).logits
                kl_sums[0] += float(token_kl(ft, base)[mask].double().sum())
                for j, v in enumerate(vectors):
                    with add_vector(pair.base.hf, pair.arch, site, v):
                        steered = pair.base.hf(input_ids=ids, attention_mask=attn).logits
                    kl_sums[j + 1] += float(token_kl(ft, steered)[mask].double().sum())
            n_tok += int(mask.sum())
            advance(ids.shape[0])
    if n_tok == 0:
        raise AuditlensError("the steering check found no tokens in its prompts")
    kls = (kl_sums / n_tok).tolist()
    return SteeringCheck(
        site=site,
        scale=1.0,
        vector_norm=float(vector.norm()),
        n_tokens=n_tok,
        kl_unsteered=kls[0],
        kl_adl=kls[1],
        kl_random=kls[2:],
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
    return Evidence(findings=findings, sections=[table])
