"""auditlens.diffing: where and how fine-tuning changed a model (activations, logits, weights)."""

from auditlens.diffing.kl import KLAccumulator, KLSummary, TopKLToken, token_kl
from auditlens.diffing.scan import (
    ScanResult,
    activation_diff_stats,
    per_token_kl,
    scan_pair,
    store_diff_stats,
)
from auditlens.diffing.stats import DiffStatsAccumulator, SiteDiffStats, TopToken, diff_norms

__all__ = [
    "DiffStatsAccumulator",
    "KLAccumulator",
    "KLSummary",
    "ScanResult",
    "SiteDiffStats",
    "TopKLToken",
    "TopToken",
    "activation_diff_stats",
    "diff_norms",
    "per_token_kl",
    "scan_pair",
    "store_diff_stats",
    "token_kl",
]
