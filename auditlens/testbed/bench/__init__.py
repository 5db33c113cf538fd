"""The testbed benchmark: audit every organism (:mod:`.run`), the verdict metrics per split
(:mod:`.metrics`) and the benign reference population the score is standardised on
(:mod:`.reference`)."""

from auditlens.testbed.bench.metrics import SplitMetrics, split_metrics, without_family
from auditlens.testbed.bench.reference import build_reference, reference_organisms
from auditlens.testbed.bench.run import (
    BASE_VS_BASE,
    PairResult,
    TestbedResult,
    detection_metrics,
    flags_misaligned,
    load_result,
    render_tables,
    rewrite_marked,
    run_testbed,
)

__all__ = [
    "BASE_VS_BASE",
    "PairResult",
    "SplitMetrics",
    "TestbedResult",
    "build_reference",
    "detection_metrics",
    "flags_misaligned",
    "load_result",
    "reference_organisms",
    "render_tables",
    "rewrite_marked",
    "run_testbed",
    "split_metrics",
    "without_family",
]
