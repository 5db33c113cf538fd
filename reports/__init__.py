"""auditlens.reports: the versioned findings schema and the self-contained HTML report."""

from .evidence import Evidence
from .findings import (
    SCHEMA_VERSION,
    AuditFindings,
    Confirmation,
    Finding,
    Hypothesis,
    ModelInfo,
    collect_versions,
)
from .report import Report, render_from_json
from .sections import (
    GenerationPair,
    GenerationPairs,
    LayerPlot,
    Section,
    Table,
    Text,
    TokenHeatmap,
)

__all__ = [
    "SCHEMA_VERSION",
    "AuditFindings",
    "Confirmation",
    "Evidence",
    "Finding",
    "GenerationPair",
    "GenerationPairs",
    "Hypothesis",
    "LayerPlot",
    "ModelInfo",
    "Report",
    "Section",
    "Table",
    "Text",
    "TokenHeatmap",
    "collect_versions",
    "render_from_json",
]
