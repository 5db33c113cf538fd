"""One streaming pass over a model pair: per-site difference statistics and per-token KL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from auditlens.datasets import MaskSpec, PromptSet, load_prompts
from auditlens.diffing.kl import KLAccumulator, KLSummary
from auditlens.diffing.stats import DiffStatsAccumulator, SiteDiffStats
from auditlens.harvest import iter_paired
from auditlens.models import ModelPair
from auditlens.progress import progress_bar
from auditlens.sites import Site
from auditlens.store import ActivationStore

__all__ = ["ScanResult", "activation_diff_stats", "per_token_kl", "scan_pair", "store_diff_stats"]


@dataclass
class ScanResult:
    """Difference statistics per site and (optionally) the KL summary of one pass."""

    stats: list[SiteDiffStats]
    kl: KLSummary | None
    accumulator: DiffStatsAccumulator

    def to_json(self) -> dict[str, Any]:
        return {
            "stats": [s.to_json() for s in self.stats],
            "kl": self.kl.to_json() if self.kl else None,
        }


def scan_pair(
    pair: ModelPair,
    prompts: PromptSet | Sequence[Any] | str,
    sites: Sequence[str | Site] | str,
    *,
    kl: bool = True,
    mask: MaskSpec | str = "all",
    batch_size: int = 8,
    max_length: int = 512,
    top_k: int = 20,
    progress: bool = True,
) -> ScanResult:
    """Stream both models over ``prompts`` once; nothing is written to disk."""
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
    return scan_pair(pair, prompts, sites, kl=False, **kw).stats


def per_token_kl(pair: ModelPair, prompts: PromptSet | Sequence[Any] | str, **kw: Any) -> KLSummary:
    """Per-token KL(ft||base) summary and top divergent tokens over a prompt set."""
    result = scan_pair(pair, prompts, [], kl=True, **kw).kl
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
