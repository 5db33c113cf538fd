"""Tool subsets (affordances): which tools an investigator may use.

``black-box`` sees the target only; ``diffing`` adds the base model and the instruments that
compare the two (and the hypotheses that rest on them); ``probes`` the shipped probe scorers;
``adversary`` steering, MELBO and fuzzing; ``data-search`` the organism's training data (a
baseline, not an auditing tool); ``all`` every tool but the data search. ``submit_answer``
is open in every subset.
"""

from __future__ import annotations

from collections.abc import Iterable

from auditlens.errors import AuditlensError

__all__ = ["FAMILIES", "parse_subset", "resolve_tools"]

FAMILIES: dict[str, tuple[str, ...]] = {
    "black-box": ("target_chat", "sample_target", "target_words", "check_target"),
    "diffing": (
        "chat", "compare_models", "diff_overview", "top_divergent_tokens", "top_diff_latents",
        "latent_details", "list_hypotheses", "test_hypothesis",
    ),
    "probes": ("probe_score",),
    "adversary": ("steer_generate", "melbo_search", "fuzz"),
    "data-search": ("search_training_data", "training_data_words"),
}  # fmt: skip
FAMILIES["all"] = (
    *FAMILIES["black-box"], *FAMILIES["diffing"], *FAMILIES["probes"], *FAMILIES["adversary"],
    "run_audit",
)  # fmt: skip


def parse_subset(spec: str | Iterable[str]) -> tuple[str, ...]:
    """Family names from ``"black-box,diffing"`` or ``"black-box+diffing"`` (or a list)."""
    parts = spec.replace("+", ",").split(",") if isinstance(spec, str) else list(spec)
    names = tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        raise AuditlensError(
            f"unknown tool families {unknown or spec!r}; choose from {', '.join(FAMILIES)}"
        )
    return names


def resolve_tools(spec: str | Iterable[str] | None) -> frozenset[str] | None:
    """The tool names of a subset (None: every tool)."""
    if spec is None:
        return None
    return frozenset(t for family in parse_subset(spec) for t in FAMILIES[family])
