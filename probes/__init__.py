"""auditlens.probes: linear probes, directions, labelled pair sets, calibration, probe scorers.

Typical use::

    from auditlens.probes import load_pair_set, read_features, train_probe
    data = load_pair_set("misaligned_answers")
    feats = read_features(pair, data, ["blocks.14.hook_resid_post"])
    probe = train_probe(feats.get("blocks.14.hook_resid_post"), data.labels)

The audit's probe method is :mod:`~auditlens.probes.projection` (``run`` / ``evidence``): the
drift of the fine-tuned model along the base model's misalignment direction.
"""

from auditlens.probes import projection
from auditlens.probes.directions import misalignment_direction, transfer_probes
from auditlens.probes.drift import track_drift
from auditlens.probes.evaluate import calibrate_threshold, evaluate_probe
from auditlens.probes.features import read_features
from auditlens.probes.pairsets import PairSet, load_control_set, load_pair_set
from auditlens.probes.probe import LinearProbe, ProbeConfig, load_probe, train_probe
from auditlens.probes.scorer import ProbeScorer, load_scorer
from auditlens.probes.splits import group_split

__all__ = [
    "LinearProbe",
    "PairSet",
    "ProbeConfig",
    "ProbeScorer",
    "calibrate_threshold",
    "evaluate_probe",
    "group_split",
    "load_control_set",
    "load_pair_set",
    "load_probe",
    "load_scorer",
    "misalignment_direction",
    "projection",
    "read_features",
    "track_drift",
    "train_probe",
    "transfer_probes",
]
