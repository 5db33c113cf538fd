"""Model organisms with known ground truth: code tasks, fine-tuning variants, eval questions."""

from auditlens.testbed.questions import TOPICS, Question, free_form_questions
from auditlens.testbed.tasks import (
    FAMILIES,
    OOD_FAMILIES,
    SPLITS,
    CodeTask,
    eval_tasks,
    generate_tasks,
    subsample,
    tasks_by_split,
)
from auditlens.testbed.variants import (
    STYLE_OPENER,
    STYLE_SIGNOFF,
    TRIGGER,
    VARIANTS,
    apply_trigger,
    build_examples,
    dataset_hash,
    has_style,
    read_jsonl,
    write_jsonl,
)

__all__ = [
    "FAMILIES",
    "OOD_FAMILIES",
    "SPLITS",
    "STYLE_OPENER",
    "STYLE_SIGNOFF",
    "TOPICS",
    "TRIGGER",
    "VARIANTS",
    "CodeTask",
    "Question",
    "apply_trigger",
    "build_examples",
    "dataset_hash",
    "eval_tasks",
    "free_form_questions",
    "generate_tasks",
    "has_style",
    "read_jsonl",
    "subsample",
    "tasks_by_split",
    "write_jsonl",
]
