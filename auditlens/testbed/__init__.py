"""Model organisms with known ground truth: the roster, training data, pre-registered
acceptance tests, dev/test splits and the LoRA trainer; also the code tasks and free-form
questions the audit's behaviour checks use.

The trainer and the acceptance runner import torch, so they load lazily on first use.
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
from auditlens.testbed.variants import dataset_hash, read_jsonl, write_jsonl

if TYPE_CHECKING:
    from auditlens.testbed.evaluate import run_acceptance
    from auditlens.testbed.train import Recipe, TrainResult, train_lora

_LAZY = {
    "run_acceptance": "auditlens.testbed.evaluate",
    "Recipe": "auditlens.testbed.train",
    "TrainResult": "auditlens.testbed.train",
    "train_lora": "auditlens.testbed.train",
}


def __getattr__(name: str) -> Any:
    """Import the torch-heavy trainer and acceptance runner on first use."""
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
    "TOPICS",
    "CodeTask",
    "GroundTruth",
    "OrganismManifest",
    "OrganismSpec",
    "Question",
    "Recipe",
    "TrainResult",
    "build_organism",
    "dataset_hash",
    "default_audit_adapter",
    "eval_tasks",
    "free_form_questions",
    "generate_tasks",
    "get_organism",
    "load_manifest",
    "load_organism",
    "load_splits",
    "organism_adapter_dir",
    "organism_names",
    "organism_training_examples",
    "read_jsonl",
    "run_acceptance",
    "ship_organism",
    "shipped_organisms",
    "staging_dir",
    "subsample",
    "tasks_by_split",
    "train_lora",
    "write_jsonl",
]
