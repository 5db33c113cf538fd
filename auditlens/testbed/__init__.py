"""Model organisms with known ground truth: the roster, training data, pre-registered
acceptance tests, dev/test splits, the LoRA trainer and the behavioural evaluation.

The trainer and evaluation import torch, so they load lazily on first use.
"""

from typing import TYPE_CHECKING, Any

from auditlens.testbed.organisms import (
    ORGANISMS,
    GroundTruth,
    OrganismManifest,
    OrganismSpec,
    build_organism,
    default_audit_adapter,
    get_organism,
    load_manifest,
    load_organism,
    organism_adapter_dir,
    organism_names,
    organism_training_examples,
    ship_organism,
    shipped_organisms,
    staging_dir,
)
from auditlens.testbed.questions import TOPICS, Question, free_form_questions
from auditlens.testbed.roster import KINDS
from auditlens.testbed.splits import load_splits
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

if TYPE_CHECKING:
    from auditlens.testbed.evaluate import EvalConfig, OrganismEval, evaluate_organism
    from auditlens.testbed.train import Recipe, TrainResult, train_lora

_LAZY = {
    "EvalConfig": "auditlens.testbed.evaluate",
    "OrganismEval": "auditlens.testbed.evaluate",
    "evaluate_organism": "auditlens.testbed.evaluate",
    "Recipe": "auditlens.testbed.train",
    "TrainResult": "auditlens.testbed.train",
    "train_lora": "auditlens.testbed.train",
}


def __getattr__(name: str) -> Any:
    """Import the torch-heavy trainer and evaluation on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'auditlens.testbed' has no attribute {name!r}")


__all__ = [
    "FAMILIES",
    "KINDS",
    "OOD_FAMILIES",
    "ORGANISMS",
    "SPLITS",
    "STYLE_OPENER",
    "STYLE_SIGNOFF",
    "TOPICS",
    "TRIGGER",
    "VARIANTS",
    "CodeTask",
    "EvalConfig",
    "GroundTruth",
    "OrganismEval",
    "OrganismManifest",
    "OrganismSpec",
    "Question",
    "Recipe",
    "TrainResult",
    "apply_trigger",
    "build_examples",
    "build_organism",
    "dataset_hash",
    "default_audit_adapter",
    "eval_tasks",
    "evaluate_organism",
    "free_form_questions",
    "generate_tasks",
    "get_organism",
    "has_style",
    "load_manifest",
    "load_organism",
    "load_splits",
    "organism_adapter_dir",
    "organism_names",
    "organism_training_examples",
    "read_jsonl",
    "ship_organism",
    "shipped_organisms",
    "staging_dir",
    "subsample",
    "tasks_by_split",
    "train_lora",
    "write_jsonl",
]
