"""Small file helpers shared by the schema and the report bundle: atomic writes, JSON reads."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from auditlens.errors import AuditlensError

__all__ = ["read_json_object", "validation_message", "write_text_atomic"]


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (threads are running)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` through a temporary file in the same folder, then rename it (with the
    permissions of a plainly created file: 0644 under the usual umask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o666 & ~_umask())  # mkstemp makes 0600; a report is a normal file
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """Load a file holding one JSON object; any problem is a one-line ``AuditlensError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise AuditlensError(f"cannot read {what} file {path}: {error}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise AuditlensError(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from None
    if not isinstance(data, dict):
        raise AuditlensError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def validation_message(error: ValidationError) -> str:
    """Condense a pydantic error to one line: the first problem and where it is."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "top level"
    message = str(first["msg"]).removeprefix("Value error, ").replace("\n", " ")
    more = error.error_count() - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
    return f"{where}: {message}{suffix}"
