"""Plotly figures for report sections, and the inline script that draws them.

Plotly reads a few HTML-like tags (``<b>``, ``<a href>``) in labels, so every label is
entity-escaped first and plotly shows it literally. The figure JSON comes from plotly's encoder
and has ``<``, ``>`` and ``&`` escaped again here, so no label can close the script element.
"""

from __future__ import annotations

import html
import json
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from .sections import LayerPlot

__all__ = ["PLOTLY_CONFIG", "figures_script", "layer_figure", "plot_label"]

PLOTLY_CONFIG: dict[str, Any] = {
    "displaylogo": False,
    "responsive": True,
    "typesetMath": False,
    "showLink": False,
    "showSendToCloud": False,
    "showEditInChartStudio": False,
    "modeBarButtonsToRemove": ["sendDataToCloud", "select2d", "lasso2d"],
    "toImageButtonOptions": {"format": "png", "scale": 2},
}
"""Offline configuration: no logo link, no cloud export, no MathJax typesetting."""

_CONTROL_GREYS = ("#7f7f7f", "#a6a6a6", "#595959", "#c4c4c4")
_JS_UNSAFE = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_PLOT_HEIGHT = 340


def plot_label(text: str) -> str:
    """A label plotly displays verbatim: its pseudo-HTML tags become literal text."""
    return html.escape(text, quote=False)


def layer_figure(section: LayerPlot) -> go.Figure:
    """Curves against layer, the null controls dashed grey behind them."""
    figure = go.Figure()
    for index, (name, values) in enumerate(section.controls.items()):
        figure.add_scatter(
            x=section.x,
            y=values,
            name=plot_label(name),
            mode="lines",
            line={"color": _CONTROL_GREYS[index % len(_CONTROL_GREYS)], "dash": "dash", "width": 2},
        )
    for name, values in section.series.items():
        figure.add_scatter(
            x=section.x, y=values, name=plot_label(name), mode="lines+markers", line={"width": 2}
        )
    figure.update_layout(
        template="plotly_white",
        height=_PLOT_HEIGHT,
        margin={"l": 64, "r": 16, "t": 16, "b": 48},
        hovermode="x unified",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0.0},
        font={"family": "system-ui, -apple-system, 'Segoe UI', sans-serif", "size": 12},
        xaxis={"title": {"text": "layer"}, "tickformat": "d", "dtick": _layer_tick(section.x)},
        yaxis={"title": {"text": plot_label(section.y_label)}, "zeroline": True},
    )
    return figure


def _layer_tick(layers: list[int]) -> int:
    span = max(layers) - min(layers)
    return max(1, -(-span // 16))


def figures_script(figures: dict[str, go.Figure]) -> str:
    """Inline JavaScript drawing each figure into the element with the matching id."""
    payload = [
        {"id": element_id, "figure": json.loads(pio.to_json(figure, validate=False))}
        for element_id, figure in figures.items()
    ]
    data = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    for unsafe, escaped in _JS_UNSAFE.items():
        data = data.replace(unsafe, escaped)
    config = json.dumps(PLOTLY_CONFIG, separators=(",", ":"))
    return (
        '(function () {\n"use strict";\n'
        f"var config = {config};\nvar figures = {data};\n"
        "figures.forEach(function (item) {\n"
        "  var element = document.getElementById(item.id);\n"
        "  if (element) {\n"
        "    Plotly.newPlot(element, item.figure.data, item.figure.layout, config);\n"
        "  }\n"
        "});\n})();\n"
    )
