"""Projection drift: does fine-tuning move activations along the base model's misalignment
direction? No generation: every statistic reads the same prompts through both models.

- ``drift`` (per prompt set, scored): the answer-start activation of the fine-tuned model
  minus the base model's on the same prompt, projected onto the base model's misalignment
  direction (mean difference on the ``misaligned_answers`` pair set) at every layer
  fine-tuning changed. The null is the same projection onto shuffled-label directions (mean
  differences of the same examples with permuted labels: random directions with the data's
  covariance). Per-layer z's are averaged over layers and standardised against the same
  average under each permutation: a permutation z that accounts for correlation across layers.
- ``win rate`` (reported only): the share of prompts whose projection is positive; a shared
  shift makes it 0 or 1 along almost any direction, so it does not bear on misalignment alone.
- ``direction cosine`` / ``transfer AUROC`` (reported only): the direction fitted on each model,
  their cosine against the random-direction bound, and probes trained on one model, tested on
  the other (:func:`~auditlens.probes.directions.transfer_from_features`).

Face: ``run(pair, examples, prompt_sets, ProjectionSettings()) -> ProjectionResult`` and
``evidence(result)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from auditlens.datasets import PromptSet
from auditlens.errors import AuditlensError
from auditlens.models import ModelPair
from auditlens.probes.directions import (
    cosine,
    mean_difference,
    random_cosine_bound,
    transfer_from_features,
)
from auditlens.probes.drift import ProjectionDrift, projection_drift, shuffled_directions
from auditlens.probes.features import Features, read_features
from auditlens.probes.pairsets import PairSet
from auditlens.probes.splits import group_split
from auditlens.reports.evidence import Evidence
from auditlens.reports.findings import Finding
from auditlens.reports.sections import LayerPlot, Section, Table
from auditlens.stats import wilson_interval

__all__ = ["ProjectionResult", "ProjectionSettings", "evidence", "run"]


@dataclass(frozen=True)
class ProjectionSettings:
    """The null and the reading."""

    n_shuffles: int = 200
    """Shuffled-label directions in the null control."""
    seed: int = 0
    """Seed of the label permutations and of the transfer split."""
    changed_tol: float = 1e-6
    """Layers whose prompt activations differ by less than this (relative) are unchanged."""
    batch_size: int = 8
    """Examples per forward pass."""

    def __post_init__(self) -> None:
        if self.n_shuffles < 2 or self.batch_size < 1 or self.changed_tol < 0:
            raise AuditlensError("projection needs n_shuffles >= 2, batch_size >= 1, tol >= 0")


@dataclass
class ProjectionResult:
    """Both models' misalignment directions, the drift per prompt set and the transfer."""

    sites: list[str]
    pair_set: str
    n_examples: int
    directions: dict[str, dict[int, Tensor]]
    """``directions[side][layer]``: the mean-difference direction fitted on that model."""
    drifts: dict[str, ProjectionDrift]
    sizes: dict[str, int]
    """Prompts per prompt set."""
    labels: dict[str, str]
    """A description of each prompt set (for the report)."""
    cosines: list[float]
    """Per layer: cos(d_base, d_finetuned)."""
    bound: float
    """95% |cosine| of random directions in this width."""
    changed: list[int]
    """Layers any prompt set showed a change at (transfer is measured there)."""
    transfer: dict[int, dict[str, float]]
    """Per changed layer: AUROC ``src->dst`` and ``probe_cosine``."""
    settings: ProjectionSettings = field(default_factory=ProjectionSettings)

    def to_json(self) -> dict[str, Any]:
        return {
            "pair_set": self.pair_set,
            "n_examples": self.n_examples,
            "n_shuffles": self.settings.n_shuffles,
            "settings": asdict(self.settings),
            "drift": {k: v.to_json() for k, v in self.drifts.items()},
            "sizes": self.sizes,
            "direction_cosine": self.cosines,
            "random_cosine_bound_95": self.bound,
            "transfer": {self.sites[i]: row for i, row in self.transfer.items()},
        }

    def save(self, directory: str | Path) -> Path:
        """``probes.json`` and ``directions.safetensors`` in ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        layers = range(len(self.sites))
        save_file(
            {
                side: torch.stack([dirs[i] for i in layers]).contiguous()
                for side, dirs in self.directions.items()
            },
            str(out / "directions.safetensors"),
            metadata={"sites": json.dumps(self.sites), "pair_set": self.pair_set},
        )
        (out / "probes.json").write_text(json.dumps(self.to_json(), indent=1))
        return out


def _read_both(
    pair: ModelPair,
    examples: PairSet | PromptSet,
    sites: list[str],
    batch_size: int,
    *,
    progress: bool,
    base_cache: Path | None = None,
    **kw: Any,
) -> tuple[Features, Features]:
    opts: dict[str, Any] = {"batch_size": batch_size, "progress": progress, **kw}
    base = read_features(pair, examples, sites, side="base", cache_dir=base_cache, **opts)
    if pair.identical:
        return base, base
    return base, read_features(pair, examples, sites, side="finetuned", **opts)


def run(
    pair: ModelPair,
    examples: PairSet,
    prompt_sets: Mapping[str, tuple[str, PromptSet]],
    settings: ProjectionSettings | None = None,
    *,
    feature_cache: str | Path | None = None,
    progress: bool = True,
) -> ProjectionResult:
    """Fit the misalignment direction on ``examples`` and measure the drift on each prompt set.

    ``prompt_sets`` maps a key to (a description, the prompts). ``feature_cache`` keeps the base
    model's features on ``examples`` (the same in every audit of that base).
    """
    s = settings or ProjectionSettings()
    layers = list(range(pair.n_layers))
    sites = [f"blocks.{layer}.hook_resid_post" for layer in layers]
    y = torch.as_tensor(examples.labels)
    cache = Path(feature_cache) if feature_cache is not None else None
    pairs_base, pairs_ft = _read_both(
        pair, examples, sites, s.batch_size, progress=progress, base_cache=cache,
        aggregations=("mean",),
    )  # fmt: skip
    dirs = {
        side: {i: mean_difference(f.get(t)[y == 1], f.get(t)[y == 0]) for i, t in enumerate(sites)}
        for side, f in (("base", pairs_base), ("finetuned", pairs_ft))
    }
    nulls = {
        i: shuffled_directions(pairs_base.get(t), examples.labels, s.n_shuffles, s.seed)
        for i, t in enumerate(sites)
    }
    drifts: dict[str, ProjectionDrift] = {}
    sizes: dict[str, int] = {}
    for name, (_, prompts) in prompt_sets.items():
        base, ft = _read_both(
            pair, prompts, sites, s.batch_size, progress=progress, aggregations=("last",),
            mask="all",
        )  # fmt: skip
        deltas = {}
        for i, t in enumerate(sites):
            delta = ft.get(t, "last") - base.get(t, "last")
            if float(delta.norm()) > s.changed_tol * float(base.get(t, "last").norm()):
                deltas[i] = delta
        drifts[name] = projection_drift(deltas, dirs["base"], nulls)
        sizes[name] = len(prompts)
    cosines = [cosine(dirs["base"][i], dirs["finetuned"][i]) for i in layers]
    # Transfer only where fine-tuning changed something (elsewhere it is trivially equal).
    changed = sorted({i for d in drifts.values() for i in d.layers}) or [layers[-1]]
    split = group_split(examples.groups, seed=s.seed, labels=examples.labels)
    feats = {"base": pairs_base, "finetuned": pairs_ft}
    transfer = {}
    for i in changed:
        moved = transfer_from_features(feats, examples, split, sites[i], seed=s.seed, n_boot=0)
        transfer[i] = {**moved.auroc, "probe_cosine": moved.probe_cosine}
    return ProjectionResult(
        sites=sites,
        pair_set=examples.name,
        n_examples=len(examples),
        directions=dirs,
        drifts=drifts,
        sizes=sizes,
        labels={k: v[0] for k, v in prompt_sets.items()},
        cosines=cosines,
        bound=random_cosine_bound(pair.d_model),
        changed=changed,
        transfer=transfer,
        settings=s,
    )


def _drift_finding(
    name: str, label: str, drift: ProjectionDrift, n: int, n_shuffles: int, art: list[str]
) -> Finding:
    layers = f"layers {drift.layers[0]}-{drift.layers[-1]}" if drift.layers else "no layer"
    if not drift.layers:
        summary = f"No layer's activations differ on the {label}: nothing drifted."
    else:
        where = "towards" if drift.effect_size > 0 else "away from"
        summary = (
            f"On {n} {label}, the fine-tuned model's answer-start activations moved {where} "
            f"the base misalignment direction (mean per-layer z {drift.z:+.2f} over {layers}; "
            f"permutation z {drift.effect_size:+.2f}, p = {drift.p_value:.2f} against "
            f"{n_shuffles} shuffled-label directions)."
        )
    summary += (
        " Reported, not scored: two models differing only by weight noise already reach z ≈ 2 "
        "(the shuffled-label directions do not match the trained direction's activation "
        "geometry), so this z is not a valid null z."
    )
    return Finding(
        id=f"probes.drift_projection.{name}",
        family="probes",
        method="misalignment_direction_projection",
        site="blocks.*.hook_resid_post",
        statistic=(
            "mean over changed layers of z(mean_prompts (h_ft - h_base) . d_misaligned) "
            "against shuffled-label directions"
        ),
        value=drift.z,
        control=drift.null_mean,
        control_kind=f"{n_shuffles} shuffled-label mean-difference directions",
        effect_size=drift.effect_size,
        summary=summary,
        artifacts=art,
        contributes=False,
    )


def evidence(result: ProjectionResult, where: str | None = None) -> Evidence:
    """The drift per prompt set (scored), its win rate, the direction cosine and the transfer.

    ``where`` is the folder (relative to the report) the result was saved into.
    """
    r = result
    n_shuffles = r.settings.n_shuffles
    art = [f"{where}/probes.json"] if where else []
    findings = [
        _drift_finding(k, r.labels[k], d, r.sizes[k], n_shuffles, art) for k, d in r.drifts.items()
    ]
    first = next(iter(r.drifts))
    ff, n_ff = r.drifts[first], r.sizes[first]
    low, high = wilson_interval(round(ff.win_rate * n_ff), n_ff)
    findings.append(
        Finding(
            id="probes.drift_win_rate",
            family="probes",
            method="misalignment_direction_projection",
            site="blocks.*.hook_resid_post",
            statistic=f"share of {r.labels[first]} projecting towards misalignment",
            value=ff.win_rate,
            control=ff.win_rate_null,
            control_kind="same share along shuffled-label directions",
            ci_low=low,
            ci_high=high,
            summary=(
                f"{ff.win_rate:.0%} of {n_ff} {r.labels[first]} moved towards the misalignment "
                f"direction (Wilson 95% CI {low:.2f}-{high:.2f}; chance 0.5, "
                f"{ff.win_rate_null:.2f} along shuffled directions). A shared shift moves "
                "every prompt the same way, so this share alone does not show misalignment."
            ),
            artifacts=art,
        )
    )
    lo_cos = min(r.changed, key=lambda i: r.cosines[i])
    findings.append(
        Finding(
            id="probes.direction_cosine",
            family="probes",
            method="misalignment_direction_transfer",
            site=r.sites[lo_cos],
            statistic="lowest cos(d_base, d_finetuned) of the misalignment direction",
            value=r.cosines[lo_cos],
            control=r.bound,
            control_kind="95% |cosine| of random directions",
            summary=(
                f"The misalignment direction fitted on each model has cosine "
                f"{r.cosines[lo_cos]:.3f} at {r.sites[lo_cos]} (its lowest; random bound "
                f"{r.bound:.3f}): both models encode misaligned answers alike."
            ),
            artifacts=[*art, f"{where}/directions.safetensors"] if where else [],
        )
    )
    worst = min(r.changed, key=lambda i: r.transfer[i]["base->finetuned"])
    t = r.transfer[worst]
    findings.append(
        Finding(
            id="probes.transfer_auroc",
            family="probes",
            method="misalignment_direction_transfer",
            site=r.sites[worst],
            statistic="AUROC of a base-trained misaligned-answer probe on the fine-tuned model",
            value=t["base->finetuned"],
            control=t["base->base"],
            control_kind="same probe on the base model",
            summary=(
                f"A misaligned-answer probe trained on the base model scores AUROC "
                f"{t['base->finetuned']:.3f} on the fine-tuned model at {r.sites[worst]} "
                f"(its lowest; {t['base->base']:.3f} on the base model, "
                f"{t['finetuned->finetuned']:.3f} when trained on the fine-tuned model)."
            ),
            artifacts=art,
        )
    )
    return Evidence(findings=findings, sections=_sections(r))


def _full(drift: ProjectionDrift, values: list[float], n_layers: int) -> list[float]:
    """Per-layer values on every layer (0 on layers fine-tuning left unchanged)."""
    out = [0.0] * n_layers
    for layer, v in zip(drift.layers, values, strict=True):
        out[layer] = v
    return out


def _sections(r: ProjectionResult) -> list[Section]:
    n = len(r.sites)
    layers = list(range(n))
    first = r.drifts[next(iter(r.drifts))]
    z_series = {f"z, {r.labels[k]}": _full(d, d.layer_z, n) for k, d in r.drifts.items()}
    band_lo = _full(first, [b[0] for b in first.layer_null_band], n)
    band_hi = _full(first, [b[1] for b in first.layer_null_band], n)
    win = {f"win rate, {r.labels[k]}": _full(d, d.layer_win_rate, n) for k, d in r.drifts.items()}
    summary_rows: list[list[Any]] = [
        [r.labels[k], r.sizes[k], len(d.layers), d.z, d.effect_size, d.p_value, d.win_rate,
         d.win_rate_null]
        for k, d in r.drifts.items()
    ]  # fmt: skip
    transfer_rows: list[list[Any]] = [
        [r.sites[i]]
        + [r.transfer[i][k] for k in ("base->base", "base->finetuned", "finetuned->finetuned")]
        + [r.transfer[i]["finetuned->base"], r.transfer[i]["probe_cosine"]]
        for i in r.changed
    ]
    return [
        LayerPlot(
            title="Drift along the misalignment direction per layer",
            x=layers,
            series=z_series,
            controls={"shuffled directions 2.5%": band_lo, "shuffled directions 97.5%": band_hi},
            y_label="z vs shuffled-label directions",
            caption=(
                "Fine-tuned minus base activation at the answer start, projected onto the base "
                "model's misalignment direction, as a z against the same projection onto "
                f"{r.settings.n_shuffles} shuffled-label directions (band: their 2.5-97.5% "
                "range). Positive = towards misaligned answers; 0 where fine-tuning changed "
                "nothing."
            ),
        ),
        LayerPlot(
            title="Share of prompts moving towards misalignment per layer",
            x=layers,
            series=win,
            controls={"chance": [0.5] * n},
            y_label="win rate",
            caption="A shared shift gives 0 or 1 along almost any direction; read it with the z.",
        ),
        LayerPlot(
            title="Misalignment direction: base vs fine-tuned",
            x=layers,
            series={"cos(d_base, d_finetuned)": r.cosines},
            controls={"random-direction bound (95%)": [r.bound] * n},
            y_label="cosine",
        ),
        Table(
            title="Drift along the misalignment direction",
            caption=(
                "Permutation z: the layer-averaged z against the same average along shuffled-"
                "label directions; p one-sided."
            ),
            columns=[
                "prompts",
                "n",
                "changed layers",
                "mean layer z",
                "permutation z",
                "p",
                "win rate",
                "win rate (shuffled)",
            ],
            rows=summary_rows,
        ),
        Table(
            title="Misaligned-answer probe transfer (test split AUROC)",
            caption="Logistic probes trained on one model's training templates.",
            columns=["site", "base→base", "base→ft", "ft→ft", "ft→base", "probe cosine"],
            rows=transfer_rows,
        ),
    ]
