"""A whole report (findings plus sections), written as HTML and JSON and re-renderable later."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from auditlens.errors import AuditlensError

from ._io import read_json_object, validation_message, write_text_atomic
from .findings import AuditFindings, check_version
from .html import render_html
from .sections import Section

__all__ = ["FINDINGS_NAME", "REPORT_DATA_NAME", "REPORT_HTML_NAME", "Report", "render_from_json"]

REPORT_HTML_NAME = "report.html"
FINDINGS_NAME = "findings.json"
REPORT_DATA_NAME = "report_data.json"


class Report(BaseModel):
    """The findings and the sections that illustrate them, in display order."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")

    findings: AuditFindings
    sections: list[Section] = Field(default_factory=list)

    def to_html(self) -> str:
        """The self-contained HTML page."""
        return render_html(self.findings, self.sections)

    def write(self, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``report.html``, ``findings.json`` and ``report_data.json`` into ``out_dir``.

        Returns the paths of the HTML report and of the findings file.
        """
        out = Path(out_dir)
        html_path = write_text_atomic(out / REPORT_HTML_NAME, self.to_html())
        findings_path = self.findings.write(out / FINDINGS_NAME)
        write_text_atomic(out / REPORT_DATA_NAME, self.model_dump_json(indent=1) + "\n")
        return html_path, findings_path

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Report:
        """Read a ``report_data.json``; any problem is a one-line ``AuditlensError``."""
        path = Path(path)
        data = read_json_object(path, "report data")
        findings = data.get("findings")
        if not isinstance(findings, dict) or "sections" not in data:
            raise AuditlensError(
                f"{path} is not a report data file (expected 'findings' and 'sections')"
            )
        check_version(path, findings.get("schema_version"))
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise AuditlensError(
                f"{path}: invalid report data: {validation_message(error)}"
            ) from None


def render_from_json(path: str | os.PathLike[str]) -> str:
    """Re-render the HTML page from a ``report_data.json`` written by ``Report.write``."""
    return Report.read(path).to_html()
