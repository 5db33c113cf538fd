"""Text for the report: number formatting and token heatmap cells (visible whitespace, colours)."""

from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import dataclass
from typing import Any

from .sections import TokenHeatmap

__all__ = [
    "TokenCell",
    "display_token",
    "flatten_config",
    "format_number",
    "heatmap_cells",
    "heatmap_scale",
]

_VISIBLE_WHITESPACE = {"\n": "↵", "\r": "␍", "\t": "⇥"}
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp"}
_POSITIVE_RGB = (220, 38, 38)
_NEGATIVE_RGB = (37, 99, 235)
_MAX_ALPHA = 0.7


def format_number(value: object) -> str:
    """Four significant digits for floats, ``—`` for missing values, text unchanged."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        return f"{value:.4g}"
    return str(value)


def display_token(text: str) -> str:
    """Token text with newlines, tabs and invisible or bidi control characters made visible."""
    if not text:
        return "∅"
    shown: list[str] = []
    for char in text:
        if char in _VISIBLE_WHITESPACE:
            shown.append(_VISIBLE_WHITESPACE[char])
        elif unicodedata.category(char) in _INVISIBLE_CATEGORIES:
            shown.append(f"\\u{ord(char):04x}")
        else:
            shown.append(char)
    return "".join(shown)


@dataclass(frozen=True)
class TokenCell:
    """One rendered token: shown text, background colour, tooltip, and a line break after it."""

    text: str
    background: str
    tooltip: str
    breaks_line: bool


def heatmap_scale(section: TokenHeatmap) -> float:
    """The absolute value that maps to full colour: ``vmax`` or the largest finite |value|."""
    if section.vmax is not None:
        return section.vmax
    finite = [abs(value) for row in section.rows for _, value in row if math.isfinite(value)]
    return max(finite, default=0.0) or 1.0


def heatmap_cells(section: TokenHeatmap) -> list[list[TokenCell]]:
    """Rows of coloured cells; colour intensity is proportional to |value| / scale."""
    scale = heatmap_scale(section)
    return [
        [_cell(text, value, scale, section.value_label) for text, value in row]
        for row in section.rows
    ]


def _cell(text: str, value: float, scale: float, label: str) -> TokenCell:
    if math.isfinite(value):
        alpha = min(abs(value) / scale, 1.0) * _MAX_ALPHA
        red, green, blue = _POSITIVE_RGB if value >= 0 else _NEGATIVE_RGB
        background = f"rgba({red},{green},{blue},{alpha:.3f})"
    else:
        background = "rgba(120,120,120,0.35)"
    tooltip = f"{label} = {format_number(value)}  ·  token {text!r}"
    return TokenCell(display_token(text), background, tooltip, "\n" in text)


def flatten_config(config: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested settings as ``(dotted.key, compact JSON value)`` rows, in their given order."""
    rows: list[tuple[str, str]] = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows.extend(flatten_config(value, prefix=f"{name}."))
        else:
            rows.append((name, json.dumps(value, ensure_ascii=False, default=str)))
    return rows
