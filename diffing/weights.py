"""Weight diff: how much, and in how many directions, fine-tuning moved each weight matrix.

For every module with a 2-D weight: ``||ΔW||_F / ||W||_F``, the top singular values of ``ΔW``
and two effective ranks (``exp`` of the entropy of the normalised singular values, and the
rank holding 99% of ``Σσ²``). Full fine-tunes compare the two models' weights; adapter
pairs read each LoRA module's ``ΔW = B·A·scaling`` from the PEFT module itself (its singular
values come exactly from an ``r × r`` core, without forming ``ΔW`` or copying the model).

Face: ``run(pair, WeightDiffSettings()) -> WeightDiffResult`` and ``evidence(result)``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from auditlens.errors import AuditlensError
from auditlens.models import ModelPair
from auditlens.progress import progress_bar
from auditlens.reports.evidence import Evidence
from auditlens.reports.findings import Finding
from auditlens.reports.sections import LayerPlot, Section, Table
from auditlens.sites import arch_spec, unwrap

__all__ = [
    "WeightDiffResult",
    "WeightDiffRow",
    "WeightDiffSettings",
    "evidence",
    "lora_delta_svdvals",
    "run",
    "spectrum_stats",
    "weight_diff_modules",
]


@dataclass(frozen=True)
class WeightDiffSettings:
    """How much of each ``ΔW`` spectrum to keep."""

    top_singular: int = 8
    """Largest singular values of ``ΔW`` listed per module."""

    def __post_init__(self) -> None:
        if self.top_singular < 1:
            raise AuditlensError("top_singular must be >= 1")


@dataclass(frozen=True)
class WeightDiffRow:
    """One weight matrix's change."""

    module: str
    layer: int | None
    kind: str
    """``full`` (two models), ``lora`` (B·A·scaling), ``modules_to_save`` (PEFT copy) or
    ``unchanged`` (not touched by the adapter)."""
    shape: tuple[int, int]
    weight_norm: float
    delta_norm: float
    rel_frobenius: float
    top_singular_values: list[float]
    effective_rank: float
    rank_99: int

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["shape"] = list(self.shape)
        return out


def spectrum_stats(sv: Float[Tensor, " k"], energy: float = 0.99) -> tuple[float, int]:
    """(exp-entropy effective rank, rank holding ``energy`` of Σσ²) of singular values."""
    s = sv.double().clamp_min(0)
    total = float(s.sum())
    if total <= 0:
        return 0.0, 0
    p = s / total
    p = p[p > 0]
    erank = math.exp(float(-(p * p.log()).sum()))
    sq = s.pow(2)
    cum = torch.cumsum(sq, 0) / sq.sum()
    rank = int((cum < energy - 1e-12).sum()) + 1
    return erank, min(rank, int(s.numel()))


def lora_delta_svdvals(
    lora_a: Float[Tensor, "r d_in"], lora_b: Float[Tensor, "d_out r"], scaling: float
) -> Float[Tensor, " r"]:
    """Singular values of ``scaling · B @ A`` from QR factors (exact, ``O((d_in+d_out) r²)``)."""
    _, r_b = torch.linalg.qr(lora_b.double())
    _, r_a = torch.linalg.qr(lora_a.double().t())
    return (torch.linalg.svdvals(r_b @ r_a.t()) * abs(scaling)).float()


def _layer_of(name: str, layers_path: str) -> int | None:
    m = re.match(rf"^{re.escape(layers_path)}\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def _row(
    name: str, layer: int | None, kind: str, weight: Tensor, delta_norm: float, sv: Tensor, top: int
) -> WeightDiffRow:
    w_norm = float(weight.detach().float().norm())
    erank, r99 = spectrum_stats(sv)
    return WeightDiffRow(
        module=name,
        layer=layer,
        kind=kind,
        shape=(int(weight.shape[0]), int(weight.shape[1])),
        weight_norm=w_norm,
        delta_norm=delta_norm,
        rel_frobenius=delta_norm / w_norm if w_norm > 0 else 0.0,
        top_singular_values=[float(v) for v in sv[:top]],
        effective_rank=erank,
        rank_99=r99,
    )


def _full_delta(weight: Tensor, other: Tensor) -> tuple[float, Tensor]:
    delta = other.detach().float().cpu() - weight.detach().float().cpu()
    if not bool(delta.any()):
        return 0.0, torch.zeros(min(delta.shape))
    return float(delta.norm()), torch.linalg.svdvals(delta)


def _lora_layer_types() -> tuple[type, ...]:
    try:
        from peft.tuners.lora import LoraLayer
        from peft.utils import ModulesToSaveWrapper
    except ImportError:  # pragma: no cover - peft is a dependency
        return ()
    return (LoraLayer, ModulesToSaveWrapper)


def _two_d_weights(root: nn.Module) -> dict[str, Tensor]:
    """Module name -> 2-D weight, skipping PEFT internals and tied duplicates."""
    skip_types = _lora_layer_types()
    seen: set[int] = set()
    skip_prefixes: list[str] = []
    out = {}
    for name, module in root.named_modules():
        if any(name.startswith(p) for p in skip_prefixes):
            continue
        if skip_types and isinstance(module, skip_types):
            skip_prefixes.append(name + ".")
            inner = getattr(module, "base_layer", None)
            if inner is None:
                inner = getattr(module, "original_module", None)
            weight = getattr(inner, "weight", None)
        else:
            weight = getattr(module, "weight", None)
        if not isinstance(weight, Tensor) or weight.dim() != 2:
            continue
        if weight.data_ptr() in seen:
            continue
        seen.add(weight.data_ptr())
        out[name] = weight
    return out


@dataclass
class WeightDiffResult:
    """Per-module weight changes, their spectra and the null-control values."""

    rows: list[WeightDiffRow]
    mode: str
    """``full``, ``lora`` or ``identical`` (base vs base)."""
    spectra: dict[str, Tensor] = field(default_factory=dict)
    """All singular values of each module's ``ΔW`` (non-zero rows only)."""
    notices: list[str] = field(default_factory=list)
    control: dict[str, dict[str, float]] = field(default_factory=dict)
    """Null-control statistics by control name (``base_vs_base`` is exactly 0)."""

    def top(self, n: int = 10) -> list[WeightDiffRow]:
        """The ``n`` most changed modules by relative Frobenius norm."""
        return sorted(self.rows, key=lambda r: -r.rel_frobenius)[:n]

    def by_layer(self) -> list[dict[str, Any]]:
        """Per layer: ``sqrt(Σ||ΔW||² / Σ||W||²)``, the max module ratio and the top module."""
        groups: dict[int | None, list[WeightDiffRow]] = {}
        for r in self.rows:
            groups.setdefault(r.layer, []).append(r)
        out = []
        for layer in sorted(groups, key=lambda x: (x is None, x if x is not None else 0)):
            rows = groups[layer]
            num = sum(r.delta_norm**2 for r in rows)
            den = sum(r.weight_norm**2 for r in rows)
            best = max(rows, key=lambda r: r.rel_frobenius)
            out.append(
                {
                    "layer": layer,
                    "rel_frobenius": math.sqrt(num / den) if den > 0 else 0.0,
                    "max_rel_frobenius": best.rel_frobenius,
                    "top_module": best.module,
                    "n_modules": len(rows),
                    "n_changed": sum(1 for r in rows if r.delta_norm > 0),
                }
            )
        return out

    def statistics(self) -> dict[str, float]:
        """Scalar statistics compared against null controls."""
        rels = [r.rel_frobenius for r in self.rows] or [0.0]
        num = sum(r.delta_norm**2 for r in self.rows)
        den = sum(r.weight_norm**2 for r in self.rows)
        return {
            "max_rel_frobenius": max(rels),
            "mean_rel_frobenius": sum(rels) / len(rels),
            "total_rel_frobenius": math.sqrt(num / den) if den > 0 else 0.0,
            "n_changed": float(sum(1 for r in self.rows if r.delta_norm > 0)),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "method": "weight_diff",
            "mode": self.mode,
            "statistics": self.statistics(),
            "control": self.control,
            "notices": self.notices,
            "by_layer": self.by_layer(),
            "rows": [r.to_json() for r in self.rows],
        }

    def save(self, directory: str | Path) -> Path:
        """``weight_diff.json`` plus all spectra in ``weight_diff.safetensors``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.contiguous() for k, v in self.spectra.items()}
        save_file(tensors, str(out / "weight_diff.safetensors"))
        (out / "weight_diff.json").write_text(json.dumps(self.to_json(), indent=1))
        return out

    @classmethod
    def load(cls, directory: str | Path) -> WeightDiffResult:
        path = Path(directory)
        try:
            meta = json.loads((path / "weight_diff.json").read_text())
            spectra = load_file(str(path / "weight_diff.safetensors"))
            rows = []
            for r in meta["rows"]:
                r = dict(r)
                r["shape"] = tuple(r["shape"])
                rows.append(WeightDiffRow(**r))
        except (OSError, KeyError, TypeError, ValueError) as err:
            raise AuditlensError(f"{path} holds no readable weight diff: {err}") from err
        return cls(rows, meta["mode"], spectra, meta.get("notices", []), meta.get("control", {}))


def weight_diff_modules(
    base: nn.Module,
    finetuned: nn.Module | None = None,
    *,
    top_singular: int = 8,
    progress: bool = True,
) -> WeightDiffResult:
    """Weight diff of two models, or of the LoRA adapters inside ``base`` when ``finetuned``
    is ``None`` (a PEFT model, or a HF model with LoRA injected)."""
    root = unwrap(base)
    layers_path = arch_spec(root).layers
    if finetuned is None:
        return _lora_diff(root, layers_path, top_singular, progress)
    ft_root = unwrap(finetuned)
    weights = _two_d_weights(root)
    ft_weights = _two_d_weights(ft_root)
    missing = sorted(set(weights) - set(ft_weights))
    if missing:
        raise AuditlensError(f"the fine-tuned model lacks weight modules: {', '.join(missing[:5])}")
    rows, spectra = [], {}
    mode = "identical" if ft_root is root else "full"
    with progress_bar(len(weights), "weight diff", enabled=progress) as advance:
        for name, w in weights.items():
            other = ft_weights[name]
            if tuple(other.shape) != tuple(w.shape):
                raise AuditlensError(
                    f"{name}: weight shapes differ ({list(w.shape)} vs {list(other.shape)})"
                )
            dnorm, sv = _full_delta(w, other) if ft_root is not root else (0.0, torch.zeros(1))
            if dnorm > 0:
                spectra[name] = sv
            rows.append(
                _row(name, _layer_of(name, layers_path), "full", w, dnorm, sv, top_singular)
            )
            advance(1)
    return WeightDiffResult(rows, mode, spectra)


def _lora_diff(root: nn.Module, layers_path: str, top: int, progress: bool) -> WeightDiffResult:
    from peft.tuners.lora import LoraLayer
    from peft.utils import ModulesToSaveWrapper

    weights = _two_d_weights(root)
    modules = dict(root.named_modules())
    rows, spectra, notices = [], {}, []
    n_lora = 0
    with progress_bar(len(weights), "weight diff (LoRA)", enabled=progress) as advance:
        for name, w in weights.items():
            module = modules[name]
            layer = _layer_of(name, layers_path)
            kind, dnorm, sv = "unchanged", 0.0, torch.zeros(1)
            if isinstance(module, LoraLayer):
                kind = "lora"
                dnorm, sv, note = _lora_module_delta(module)
                n_lora += 1
                if note and note not in notices:
                    notices.append(note)
            elif isinstance(module, ModulesToSaveWrapper):
                kind = "modules_to_save"
                adapter = module.active_adapters[0] if module.active_adapters else None
                copy_weight = None
                if adapter is not None and adapter in module.modules_to_save:
                    copy_weight = getattr(module.modules_to_save[adapter], "weight", None)
                if isinstance(copy_weight, Tensor):
                    dnorm, sv = _full_delta(w, copy_weight)
            if dnorm > 0:
                spectra[name] = sv
            rows.append(_row(name, layer, kind, w, dnorm, sv, top))
            advance(1)
    if n_lora == 0 and not spectra:
        notices.append("no LoRA modules found: the adapter changes no 2-D weight")
    return WeightDiffResult(rows, "lora", spectra, notices)


def _lora_module_delta(module: Any) -> tuple[float, Tensor, str | None]:
    """(||ΔW||_F, singular values, notice) summed over the module's active adapters."""
    note = None
    parts: list[tuple[Any, ...]] = []
    for adapter in module.active_adapters:
        if adapter not in module.lora_A and adapter not in getattr(module, "lora_embedding_A", {}):
            continue
        if getattr(module, "use_dora", {}).get(adapter, False):
            note = "DoRA adapters: ΔW is B·A·scaling and excludes the magnitude rescaling"
        if adapter in module.lora_A:
            a = module.lora_A[adapter].weight.detach().float().cpu()
            b = module.lora_B[adapter].weight.detach().float().cpu()
            if a.dim() == 2 and b.dim() == 2:
                parts.append(("ab", a, b, float(module.scaling[adapter])))
                continue
        parts.append(("dense", module.get_delta_weight(adapter).detach().float().cpu()))
    if not parts:
        return 0.0, torch.zeros(1), note
    if len(parts) == 1 and parts[0][0] == "ab":
        _, a, b, s = parts[0]
        sv = lora_delta_svdvals(a, b, s)
        return float(sv.double().pow(2).sum().sqrt()), sv, note
    delta = None
    for p in parts:
        d = p[2] @ p[1] * p[3] if p[0] == "ab" else p[1]
        delta = d if delta is None else delta + d
    assert delta is not None
    if not bool(delta.any()):
        return 0.0, torch.zeros(1), note
    return float(delta.norm()), torch.linalg.svdvals(delta), note


def run(
    pair: ModelPair, settings: WeightDiffSettings | None = None, *, progress: bool = True
) -> WeightDiffResult:
    """Per-module weight diff of a pair: full fine-tune, adapter (LoRA) or base vs base."""
    top_singular = (settings or WeightDiffSettings()).top_singular
    base, ft = pair.base, pair.finetuned
    if pair.identical:
        result = weight_diff_modules(
            base.module, base.module, top_singular=top_singular, progress=progress
        )
    elif base.module is ft.module:
        if not ft.adapter_enabled:
            raise AuditlensError("adapter pair with the adapter disabled on the fine-tuned side")
        result = weight_diff_modules(ft.module, None, top_singular=top_singular, progress=progress)
    else:
        result = weight_diff_modules(
            base.module, ft.module, top_singular=top_singular, progress=progress
        )
    result.control["base_vs_base"] = {k: 0.0 for k in result.statistics()}
    result.notices.append("base_vs_base control is exactly 0 (identical weights)")
    return result


def evidence(result: WeightDiffResult, where: str | None = None) -> Evidence:
    """The total relative weight change (against base vs base, exactly 0), per layer and module.

    ``where`` is the folder (relative to the report) the result was saved into.
    """
    per_layer = {int(r["layer"]): r for r in result.by_layer() if r["layer"] is not None}
    layers = list(range(max(per_layer) + 1)) if per_layer else []
    rel = [float(per_layer[i]["rel_frobenius"]) if i in per_layer else 0.0 for i in layers]
    stats = result.statistics()
    changed = [i for i in layers if rel[i] > 0]
    where_changed = f"layers {changed[0]}-{changed[-1]}" if changed else "no layer"
    top_layer = max(layers, key=lambda i: rel[i]) if layers else 0
    top = result.top(1)[0] if result.rows else None
    finding = Finding(
        id="diffing.weight_diff",
        family="diffing",
        method="weight_diff",
        statistic="sqrt(Σ||ΔW||² / Σ||W||²) over all 2-D weights",
        value=stats["total_rel_frobenius"],
        control=0.0,
        control_kind="base_vs_base",
        summary=(
            f"Fine-tuning changed {int(stats['n_changed'])} weight matrices ({where_changed}); "
            f"total relative change {stats['total_rel_frobenius']:.4g}, largest per layer at "
            f"layer {top_layer} ({rel[top_layer] if rel else 0.0:.4g}), largest module "
            f"{top.module if top else '–'} ({top.rel_frobenius if top else 0.0:.4g}). "
            "Base vs base is exactly 0."
        ),
        artifacts=[f"{where}/weight_diff.json"] if where else [],
    )
    sections: list[Section] = [
        LayerPlot(
            title="Relative weight change per layer",
            x=layers,
            series={"sqrt(Σ||ΔW||² / Σ||W||²)": rel},
            controls={"base vs base": [0.0] * len(layers)},
            y_label="relative weight change",
            caption=f"Mode: {result.mode}. Modules outside the blocks are not plotted.",
        ),
        Table(
            title="Most-changed weight matrices",
            caption="Relative Frobenius norm of ΔW, its top singular values and effective rank.",
            columns=["module", "kind", "||ΔW|| / ||W||", "σ1", "effective rank", "rank 99%"],
            rows=[
                [
                    r.module,
                    r.kind,
                    r.rel_frobenius,
                    r.top_singular_values[0] if r.top_singular_values else 0.0,
                    r.effective_rank,
                    r.rank_99,
                ]
                for r in result.top(10)
                if r.delta_norm > 0
            ],
        ),
    ]
    return Evidence(findings=[finding], sections=sections)
