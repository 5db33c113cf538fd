"""auditlens.reports: the versioned findings schema and the self-contained HTML report."""

from .findings import (
    SCHEMA_VERSION,
    AuditFindings,
    Finding,
    ModelInfo,
    collect_versions,
)
from .html import render_html
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
    "Finding",
    "GenerationPair",
    "GenerationPairs",
    "LayerPlot",
    "ModelInfo",
    "Report",
    "Section",
    "Table",
    "Text",
    "TokenHeatmap",
    "collect_versions",
    "render_from_json",
    "render_html",
]
