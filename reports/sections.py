"""Report sections: the typed building blocks a method hands to the HTML report.

Sections form a discriminated union on ``kind`` so a whole report round-trips through JSON.
Every string in a section is treated as untrusted text by the renderer.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "GenerationPair",
    "GenerationPairs",
    "LayerPlot",
    "Section",
    "Table",
    "TableCell",
    "Text",
    "TokenHeatmap",
]

TableCell = str | float | int | None

_BLANK_LINE = re.compile(r"\n[ \t]*\n")


class _Section(BaseModel):
    """Strict base: unknown fields are errors, NaN/inf serialise as JSON strings."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")


class LayerPlot(_Section):
    """Per-layer curves (a statistic against layer), with null controls drawn dashed grey."""

    kind: Literal["layer_plot"] = "layer_plot"
    title: str
    x: list[int] = Field(min_length=1)
    series: dict[str, list[float]] = Field(min_length=1)
    controls: dict[str, list[float]] = Field(default_factory=dict)
    y_label: str = ""
    caption: str = ""

    @model_validator(mode="after")
    def _lengths_match(self) -> LayerPlot:
        for name, values in {**self.series, **self.controls}.items():
            if len(values) != len(self.x):
                raise ValueError(
                    f"layer plot {self.title!r}: series {name!r} has {len(values)} values "
                    f"for {len(self.x)} layers"
                )
        return self


class TokenHeatmap(_Section):
    """Tokens highlighted by a per-token value, one row per prompt or context.

    Colours are scaled by ``vmax`` (default: the largest absolute value in the section); negative
    values use a second hue, so signed scores read as signed.
    """

    kind: Literal["token_heatmap"] = "token_heatmap"
    title: str
    caption: str = ""
    value_label: str = "value"
    rows: list[list[tuple[str, float]]]
    vmax: float | None = Field(default=None, gt=0.0)


class Table(_Section):
    """A plain table; floats are shown with four significant digits."""

    kind: Literal["table"] = "table"
    title: str
    caption: str = ""
    columns: list[str] = Field(min_length=1)
    rows: list[list[TableCell]]
    what_changed: bool = False
    """Shown in the report's "What changed" part, beside the hypotheses it supports."""

    @model_validator(mode="after")
    def _row_widths(self) -> Table:
        for index, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(
                    f"table {self.title!r}: row {index} has {len(row)} cells "
                    f"for {len(self.columns)} columns"
                )
        return self


class GenerationPair(BaseModel):
    """One prompt with two completions shown side by side (e.g. perturbed vs control)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    left_label: str
    left: str
    right_label: str
    right: str
    note: str | None = None


class GenerationPairs(_Section):
    """Side-by-side generations, e.g. fine-tuned vs base, or steered vs random-vector control."""

    kind: Literal["generations"] = "generations"
    title: str
    caption: str = ""
    items: list[GenerationPair]


class Text(_Section):
    """Free text; paragraphs are separated by blank lines."""

    kind: Literal["text"] = "text"
    title: str
    body: str

    def paragraphs(self) -> list[str]:
        """The body split on blank lines, without empty paragraphs."""
        blocks = _BLANK_LINE.split(self.body.replace("\r\n", "\n"))
        return [block.strip("\n") for block in blocks if block.strip()]


Section = Annotated[
    LayerPlot | TokenHeatmap | Table | GenerationPairs | Text, Field(discriminator="kind")
]
"""Any report section, told apart by its ``kind`` field."""
