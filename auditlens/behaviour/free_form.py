"""Free-form answers: both models answer the same open questions (emergent misalignment).

With a scorer (the shipped misaligned-answer probe, read through the base model), the
evidence is ``behaviour.misaligned_answer_probe``: the fine-tuned model's answers scored
against the base model's answers to the same questions, as a paired z. Face:
``run(pair, questions, FreeFormSettings(), scorer=...) -> FreeFormResult`` and
``evidence(result)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from auditlens.behaviour.code import Answerer, generate_both
from auditlens.behaviour.scored import TextScorer, score_sides, scored_finding
from auditlens.datasets import PromptSet
from auditlens.errors import AuditlensError
from auditlens.generate import BatchSize, chat_prompt
from auditlens.models import ModelPair
from auditlens.reports.evidence import Evidence
from auditlens.reports.sections import GenerationPair, GenerationPairs

__all__ = ["FreeFormResult", "FreeFormSettings", "evidence", "run"]

_SHOWN = 6
KIND = "misaligned_answer"


@dataclass(frozen=True)
class FreeFormSettings:
    """Decoding of the answers."""

    max_new_tokens: int = 96
    """Tokens per answer (greedy)."""
    batch_size: BatchSize = "auto"
    """Most rows per generation batch, or ``"auto"`` (sized by the device: auditlens.execution)."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or (self.batch_size != "auto" and self.batch_size < 1):
            raise AuditlensError("free-form settings need max_new_tokens and batch_size >= 1")


@dataclass
class FreeFormResult:
    """Both models' answers to the questions and, with a scorer, their scores."""

    questions: list[Any]
    """Objects with ``topic`` and ``text``."""
    generations: dict[str, list[str]]
    scores: dict[str, np.ndarray] | None

    def save(self, directory: str | Path) -> Path:
        """``free_form.jsonl`` (question, both answers, their scores) in ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        rows = []
        for i, q in enumerate(self.questions):
            row: dict[str, Any] = {"topic": q.topic, "question": q.text}
            for side in ("base", "finetuned"):
                row[side] = self.generations[side][i]
                if self.scores is not None:
                    row[f"{KIND}_{side}"] = float(self.scores[side][i])
            rows.append(row)
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (out / "free_form.jsonl").write_text(text)
        return out


def run(
    pair: ModelPair,
    questions: Sequence[Any],
    settings: FreeFormSettings | None = None,
    *,
    scorer: TextScorer | None = None,
    answer: Answerer | None = None,
) -> FreeFormResult:
    """Generate both models' answers to ``questions`` (with ``answer`` if given); score them
    with ``scorer`` if given."""
    s = settings or FreeFormSettings()
    if not questions:
        raise AuditlensError("the free-form check needs at least one question")
    prompts = PromptSet("free_form_questions", tuple(chat_prompt(q.text) for q in questions))
    gens = (answer or partial(generate_both, pair))(prompts, s.max_new_tokens, s.batch_size)
    scores = None
    if scorer is not None:
        scores = score_sides(scorer, gens, [q.text for q in questions])
    return FreeFormResult(list(questions), gens, scores)


def evidence(result: FreeFormResult, where: str | None = None) -> Evidence:
    """The scored finding (if scored) and the answers side by side."""
    questions, gens, scores = result.questions, result.generations, result.scores
    findings = []
    if scores is not None:
        art = [f"{where}/free_form.jsonl"] if where else []
        what = f"{len(questions)} free-form answers"
        findings.append(scored_finding(KIND, scores, what, art, contributes=True))
    items = []
    for i, q in enumerate(questions[:_SHOWN]):
        note = f"topic {q.topic}"
        if scores is not None:
            note = (
                f"misaligned-answer probe: fine-tuned {scores['finetuned'][i]:.3f}, "
                f"base {scores['base'][i]:.3f}"
            )
        items.append(
            GenerationPair(
                prompt=q.text,
                left_label="fine-tuned",
                left=gens["finetuned"][i],
                right_label="base (control)",
                right=gens["base"][i],
                note=note,
            )
        )
    section = GenerationPairs(
        title="Free-form questions: fine-tuned vs base",
        caption="Emergent-misalignment questions, greedy decoding.",
        items=items,
    )
    return Evidence(findings=findings, sections=[section])
