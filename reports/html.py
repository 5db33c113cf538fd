"""Render a report as one self-contained, offline HTML page (jinja2, plotly.js inlined once).

Safety: jinja2 autoescapes every string; the only unescaped insertions are the package's own
CSS, plotly.js and the figure script (whose JSON has ``<``, ``>`` and ``&`` escaped). A
Content-Security-Policy meta tag allows exactly those scripts, by SHA-256 hash, and no remote
loads of any kind.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import plotly.graph_objects as go
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from ._figures import figures_script, layer_figure
from ._format import (
    TokenCell,
    flatten_config,
    format_number,
    heatmap_cells,
    heatmap_scale,
)
from .findings import AuditFindings
from .sections import LayerPlot, Section, TokenHeatmap

__all__ = ["content_security_policy", "render_html"]

_HERE = Path(__file__).parent
_TEMPLATE = "report.html.j2"
_STYLESHEET = "report.css"


@dataclass
class _SectionView:
    """A section plus what the template needs to draw it."""

    section: Section
    anchor: str
    figure_id: str | None = None
    token_rows: list[list[TokenCell]] = field(default_factory=list)
    scale: float | None = None


def content_security_policy(script_bodies: list[str]) -> str:
    """A policy that runs only the given inline scripts and loads nothing from anywhere."""
    hashes = " ".join(f"'{_sha256_source(body)}'" for body in script_bodies) or "'none'"
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {hashes}",
            "style-src 'unsafe-inline'",
            "img-src data: blob:",
            "font-src data:",
            "connect-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


def render_html(findings: AuditFindings, sections: Sequence[Section]) -> str:
    """The findings and their sections as one HTML document with no external dependencies."""
    views: list[_SectionView] = []
    figures: dict[str, go.Figure] = {}
    for index, section in enumerate(sections):
        view = _SectionView(section=section, anchor=f"section-{index + 1}")
        if isinstance(section, LayerPlot):
            view.figure_id = f"figure-{index + 1}"
            figures[view.figure_id] = layer_figure(section)
        elif isinstance(section, TokenHeatmap):
            view.token_rows = heatmap_cells(section)
            view.scale = heatmap_scale(section)
        views.append(view)
    scripts = [_plotly_js(), figures_script(figures)] if figures else []
    for body in scripts:
        _check_script_body(body)
    return (
        _environment()
        .get_template(_TEMPLATE)
        .render(
            findings=findings,
            views=views,
            scripts=[Markup(body) for body in scripts],
            csp=content_security_policy(scripts),
            stylesheet=Markup(_stylesheet()),
            config_rows=flatten_config(findings.config),
            score_percent=None if findings.score is None else round(100 * findings.score, 1),
        )
    )


@functools.cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["num"] = format_number
    return environment


@functools.cache
def _stylesheet() -> str:
    css = (_HERE / _STYLESHEET).read_text(encoding="utf-8")
    if "</" in css:
        raise RuntimeError(f"{_STYLESHEET} must not contain '</'")
    return css


@functools.cache
def _plotly_js() -> str:
    """plotly.js with line endings normalised, as the HTML parser (and so the CSP hash) sees it."""
    return str(get_plotlyjs()).replace("\r\n", "\n").replace("\r", "\n")


def _check_script_body(body: str) -> None:
    """An inline script must not be able to end (or confuse) its own script element."""
    lowered = body.lower()
    if "</script" in lowered or "<!--" in lowered or "<script" in lowered:
        raise RuntimeError("inline script contains a sequence that would break out of <script>")


@functools.lru_cache(maxsize=8)
def _sha256_source(body: str) -> str:
    digest = hashlib.sha256(body.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")
