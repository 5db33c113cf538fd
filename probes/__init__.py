"""auditlens.probes: linear probes, directions, labelled pair sets, calibration, probe scorers.

Typical use::

    from auditlens.probes import load_pair_set, read_features, train_probe
    data = load_pair_set("misaligned_answers")
    feats = read_features(pair, data, ["blocks.14.hook_resid_post"])
    probe = train_probe(feats.get("blocks.14.hook_resid_post"), data.labels)
"""

from auditlens.probes.directions import (
    CosineTable,
    Direction,
    TransferResult,
    cosine,
    cosine_table,
    mean_difference,
    misalignment_direction,
    random_cosine_bound,
    transfer_probes,
)
from auditlens.probes.drift import DriftResult, drift_from_scores, track_drift
from auditlens.probes.evaluate import (
    ProbeEvaluation,
    ShuffledControl,
    calibrate_threshold,
    evaluate_probe,
    evaluate_scores,
    shuffled_label_control,
)
from auditlens.probes.features import (
    AGGREGATIONS,
    Features,
    aggregate,
    read_features,
)
from auditlens.probes.pairsets import (
    PAIR_SETS,
    LabelledExample,
    PairSet,
    build_deception_pairs,
    build_misaligned_answer_pairs,
    build_vulnerable_code_pairs,
    load_control_set,
    load_pair_set,
)
from auditlens.probes.probe import (
    LinearProbe,
    ProbeConfig,
    ProbeMismatchError,
    ProbeMismatchWarning,
    load_probe,
    train_probe,
)
from auditlens.probes.scorer import (
    SCORER_KINDS,
    BanditAgreement,
    ProbeScorer,
    bandit_agreement,
    load_scorer,
)
from auditlens.probes.splits import Split, group_split, holdout_split
from auditlens.probes.sweep import SweepResult, SweepRow, sweep_probes

__all__ = [
    "AGGREGATIONS",
    "PAIR_SETS",
    "SCORER_KINDS",
    "BanditAgreement",
    "CosineTable",
    "Direction",
    "DriftResult",
    "Features",
    "LabelledExample",
    "LinearProbe",
    "PairSet",
    "ProbeConfig",
    "ProbeEvaluation",
    "ProbeMismatchError",
    "ProbeMismatchWarning",
    "ProbeScorer",
    "ShuffledControl",
    "Split",
    "SweepResult",
    "SweepRow",
    "TransferResult",
    "aggregate",
    "bandit_agreement",
    "build_deception_pairs",
    "build_misaligned_answer_pairs",
    "build_vulnerable_code_pairs",
    "calibrate_threshold",
    "cosine",
    "cosine_table",
    "drift_from_scores",
    "evaluate_probe",
    "evaluate_scores",
    "group_split",
    "holdout_split",
    "load_control_set",
    "load_pair_set",
    "load_probe",
    "load_scorer",
    "mean_difference",
    "misalignment_direction",
    "random_cosine_bound",
    "read_features",
    "shuffled_label_control",
    "sweep_probes",
    "track_drift",
    "train_probe",
    "transfer_probes",
]
