"""The activation scan: one streaming pass over a pair, per-site differences and per-token KL.

Face: ``run(pair, prompts, ScanSettings(...)) -> ScanResult`` and ``evidence(result)``: where
in depth the residual stream changed most (relative difference and cosine per layer), the
mean next-token KL(ft||base), the most-changed positions and the most divergent tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditlens.datasets import MaskSpec, PromptSet, load_prompts
from auditlens.diffing.kl import KLAccumulator, KLSummary
from auditlens.diffing.stats import DiffStatsAccumulator, SiteDiffStats
from auditlens.errors import AuditlensError
from auditlens.harvest import iter_paired
from auditlens.models import ModelPair
from auditlens.progress import progress_bar
from auditlens.reports.evidence import Evidence
from auditlens.reports.findings import Finding
from auditlens.reports.sections import LayerPlot, Section, Table, TokenHeatmap
from auditlens.store import ActivationStore

__all__ = [
    "ScanResult",
    "ScanSettings",
    "activation_diff_stats",
    "evidence",
    "per_token_kl",
    "run",
    "store_diff_stats",
]


@dataclass(frozen=True)
class ScanSettings:
    """What one scan reads."""

    sites: tuple[str, ...] | None = None
    """Sites compared; None: ``resid_post`` of every layer (the per-layer profile)."""
    kl: bool = True
    """Also compare the two models' next-token distributions (per-token KL)."""
    mask: str = "all"
    """Positions that count: ``all``, ``assistant`` or ``last_K``."""
    batch_size: int = 8
    """Prompts per forward pass."""
    max_length: int = 512
    """Tokens per prompt (longer prompts are truncated)."""
    top_k: int = 20
    """Most-changed positions and highest-KL tokens kept per site."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_length < 1 or self.top_k < 1:
            raise AuditlensError("scan settings need batch_size, max_length and top_k >= 1")
        if self.sites is not None and not self.sites and not self.kl:
            raise AuditlensError("a scan with no sites and no KL measures nothing")


@dataclass
class ScanResult:
    """Difference statistics per site and (optionally) the KL summary of one pass."""

    stats: list[SiteDiffStats]
    kl: KLSummary | None
    accumulator: DiffStatsAccumulator

    @property
    def peak(self) -> int:
        """Index (in ``stats``) of the site whose mean relative difference is largest."""
        rel = [s.mean_rel_diff_norm for s in self.stats]
        return max(range(len(rel)), key=lambda i: rel[i])

    def to_json(self) -> dict[str, Any]:
        return {
            "stats": [s.to_json() for s in self.stats],
            "kl": self.kl.to_json() if self.kl else None,
        }

    def save(self, directory: str | Path) -> Path:
        """``diff_stats.json`` + ``diff_stats.safetensors`` (+ ``kl.json``) in ``directory``."""
        out = Path(directory)
        self.accumulator.save(out)
        if self.kl is not None:
            (out / "kl.json").write_text(json.dumps(self.kl.to_json(), indent=1))
        return out


def run(
    pair: ModelPair,
    prompts: PromptSet | Sequence[Any] | str,
    settings: ScanSettings | None = None,
    *,
    progress: bool = True,
) -> ScanResult:
    """Stream both models over ``prompts`` once; nothing is written to disk."""
    cfg = settings or ScanSettings()
    sites = cfg.sites
    if sites is None:
        sites = tuple(f"blocks.{layer}.hook_resid_post" for layer in range(pair.n_layers))
    return _scan(
        pair, prompts, sites, kl=cfg.kl, mask=cfg.mask, batch_size=cfg.batch_size,
        max_length=cfg.max_length, top_k=cfg.top_k, progress=progress,
    )  # fmt: skip


def _scan(
    pair: ModelPair,
    prompts: PromptSet | Sequence[Any] | str,
    sites: Sequence[str],
    *,
    kl: bool,
    mask: MaskSpec | str,
    batch_size: int,
    max_length: int,
    top_k: int,
    progress: bool,
) -> ScanResult:
    prompt_set = load_prompts(prompts)
    site_names = [s.name for s in pair.sites(sites)] if sites else []
    stats = DiffStatsAccumulator(site_names, top_k=top_k)
    kl_acc = KLAccumulator(pair.tokenizer, top_k=top_k) if kl else None
    tok = pair.tokenizer
    with progress_bar(len(prompt_set), "scan pair", enabled=progress) as advance:
        for paired in iter_paired(
            pair, prompt_set, site_names, batch_size=batch_size, mask=mask,
            max_length=max_length, logits=kl,
        ):  # fmt: skip
            b = paired.batch
            sel = b.token_mask
            rows, cols = sel.nonzero(as_tuple=True)
            ids = b.input_ids
            row_of = {int(p): r for r, p in enumerate(b.prompt_index.tolist())}

            def context(p: int, pos: int, ids: Any = ids, row_of: Any = row_of) -> tuple[str, str]:
                r = row_of[p]
                lo = max(0, pos - 12)
                return tok.decode([int(ids[r, pos])]), tok.decode(ids[r, lo : pos + 4].tolist())

            for name, value in paired.acts.items():
                stats.update(name, value[sel], b.prompt_index[rows], cols, context)
            if kl_acc is not None and paired.logits is not None:
                kl_acc.update(ids, sel, b.prompt_index, *paired.logits)
            advance(ids.shape[0])
    return ScanResult(stats.result(), kl_acc.result() if kl_acc else None, stats)


def activation_diff_stats(
    pair: ModelPair, prompts: PromptSet | Sequence[Any] | str, sites: Sequence[str] | str, **kw: Any
) -> list[SiteDiffStats]:
    """Per-site activation-difference statistics of a pair over a prompt set."""
    names = tuple(sites.split(",")) if isinstance(sites, str) else tuple(sites)
    return run(pair, prompts, ScanSettings(sites=names, kl=False, **kw)).stats


def per_token_kl(pair: ModelPair, prompts: PromptSet | Sequence[Any] | str, **kw: Any) -> KLSummary:
    """Per-token KL(ft||base) summary and top divergent tokens over a prompt set."""
    result = run(pair, prompts, ScanSettings(sites=(), kl=True, **kw)).kl
    assert result is not None
    return result


def store_diff_stats(
    store: ActivationStore, tokenizer: Any = None, top_k: int = 20, batch_rows: int = 4096
) -> list[SiteDiffStats]:
    """Per-site difference statistics from a harvested activation store."""
    acc = DiffStatsAccumulator(store.sites, top_k=top_k)
    prompt_index, positions = store.prompt_index(), store.positions()

    def context(p: int, pos: int) -> tuple[str, str]:
        if tokenizer is None:
            return "", ""
        ids = store.prompt_tokens(p)
        lo = max(0, pos - 12)
        return tokenizer.decode([ids[pos]]), tokenizer.decode(ids[lo : pos + 4])

    for site in store.sites:
        offset = 0
        for batch in store.iter_batches(site, batch_rows):
            n = batch.shape[0]
            sl = slice(offset, offset + n)
            acc.update(site, batch, prompt_index[sl], positions[sl], context)
            offset += n
    return acc.result()


def _layer_of(site: str) -> int:
    return int(site.split(".")[1])


def evidence(result: ScanResult, where: str | None = None) -> Evidence:
    """The most-changed layer and the mean KL as findings; per-layer plots and token tables.

    ``where`` is the folder (relative to the report) the result was saved into.
    """
    if result.kl is None or not result.stats:
        raise AuditlensError("the scan's evidence needs per-site statistics and the KL")
    kl, stats = result.kl, result.stats
    layers = [_layer_of(s.site) for s in stats]
    rel = [s.mean_rel_diff_norm for s in stats]
    cos = [s.mean_cosine for s in stats]
    peak = result.peak
    art = (lambda *names: [f"{where}/{n}" for n in names]) if where else (lambda *_: [])
    findings = [
        Finding(
            id="layers.peak_rel_diff",
            family="diffing",
            method="activation_diff_norm",
            site=stats[peak].site,
            statistic="mean ||h_ft - h_base|| / ||h_base|| at the most-changed layer",
            value=rel[peak],
            summary=(
                f"Fine-tuning changed the residual stream most at layer {layers[peak]} "
                f"(mean relative difference {rel[peak]:.4f}, cosine {cos[peak]:.4f})."
            ),
            artifacts=art("diff_stats.json", "diff_stats.safetensors"),
        ),
        Finding(
            id="kl.mean",
            family="diffing",
            method="kl",
            statistic="mean per-token KL(ft||base), nats",
            value=kl.mean,
            summary=(
                f"Mean next-token KL(ft||base) is {kl.mean:.4f} nats over {kl.n_tokens} tokens "
                f"(p99 {kl.p99:.4f}, max {kl.max:.4f})."
            ),
            artifacts=art("kl.json"),
        ),
    ]
    top_rows: list[list[Any]] = [
        [
            t.context,
            t.kl,
            ", ".join(f"{tok!r} {p:.2f}" for tok, p in t.base_top[:3]),
            ", ".join(f"{tok!r} {p:.2f}" for tok, p in t.ft_top[:3]),
        ]
        for t in kl.top_tokens
    ]
    sections: list[Section] = [
        LayerPlot(
            title="Relative activation difference per layer",
            x=layers,
            series={"mean ||h_ft − h_base|| / ||h_base||": rel},
            y_label="relative difference",
            caption=f"Residual stream after each block, {kl.n_tokens} tokens.",
        ),
        LayerPlot(
            title="Cosine similarity per layer",
            x=layers,
            series={"mean cos(h_base, h_ft)": cos},
            y_label="cosine",
        ),
        TokenHeatmap(
            title="Per-token KL(ft||base)",
            caption="Each token is shaded by the KL of the next-token distributions after it.",
            value_label="KL (nats)",
            rows=kl.rows,
        ),
        Table(
            title="Tokens with the highest KL(ft||base)",
            caption="The context ends at the position whose next-token prediction diverged.",
            columns=["context", "KL", "base prefers", "fine-tuned prefers"],
            rows=top_rows,
        ),
        Table(
            title=f"Most-changed positions at {stats[peak].site}",
            columns=["token", "||Δh||", "context"],
            rows=[[t.token, t.value, t.context] for t in stats[peak].top_tokens],
        ),
    ]
    return Evidence(findings=findings, sections=sections)
