"""Scorers of model outputs: the Bandit judge for code and small statistics helpers."""

from auditlens.scoring.bandit import (
    INFORMATIONAL_TESTS,
    BanditResult,
    RateSummary,
    bandit_label,
    bandit_labels,
    extract_code,
    insecure_rate,
)
from auditlens.scoring.stats import (
    Estimate,
    auroc,
    bootstrap_ci,
    wilson_interval,
    win_rate,
    win_rate_ci,
)

__all__ = [
    "INFORMATIONAL_TESTS",
    "BanditResult",
    "Estimate",
    "RateSummary",
    "auroc",
    "bandit_label",
    "bandit_labels",
    "bootstrap_ci",
    "extract_code",
    "insecure_rate",
    "wilson_interval",
    "win_rate",
    "win_rate_ci",
]
