"""Text-only judges: model outputs in, labels out (no model is loaded here).

``code``: Bandit's insecure / secure / unparseable label of a completion's Python code, the
insecure-rate summary with its Wilson interval, and the same label as a detector or scorer.
"""

from auditlens.judges.code import (
    BanditResult,
    BanditScorer,
    RateSummary,
    bandit_label,
    bandit_labels,
    extract_code,
    fence,
    insecure_code_detector,
    insecure_rate,
)

__all__ = [
    "BanditResult",
    "BanditScorer",
    "RateSummary",
    "bandit_label",
    "bandit_labels",
    "extract_code",
    "fence",
    "insecure_code_detector",
    "insecure_rate",
]
