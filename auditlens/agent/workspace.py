"""Path confinement: every path an agent names must resolve inside the workspace folder.

Paths are resolved with symlinks followed before the check, so ``../..``, absolute paths
elsewhere and symlinks that point out of the workspace are all refused.
"""

from __future__ import annotations

import re
from pathlib import Path

from auditlens.errors import AuditlensError

__all__ = ["NAME_PATTERN", "PathEscapeError", "Workspace", "check_name"]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""Names the agent may give to runs and outputs (no separators, no leading dot)."""


class PathEscapeError(AuditlensError):
    """A path argument that resolves outside the workspace (or is malformed)."""


def check_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it is a safe single path component, else raise."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or ".." in name:
        raise PathEscapeError(
            f"invalid {what} {name!r}: use 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return name


class Workspace:
    """A folder the agent may read from and write to; nothing outside it is reachable."""

    def __init__(self, root: str | Path) -> None:
        path = Path(root).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        self.root = path.resolve(strict=True)

    def resolve(self, path: str | Path, *, must_exist: bool = False) -> Path:
        """Resolve ``path`` (relative to the workspace, or absolute) and confine it.

        Symlinks are followed before the check; a path that leaves the workspace raises
        :class:`PathEscapeError`.
        """
        text = str(path)
        if not text.strip() or "\x00" in text:
            raise PathEscapeError("empty or malformed path")
        candidate = Path(text).expanduser()
        if not candidate.is_absolute():
            candidate = self.root / candidate
        resolved = candidate.resolve(strict=False)
        if not resolved.is_relative_to(self.root):
            raise PathEscapeError(f"path {text!r} is outside the workspace; paths must stay in it")
        if must_exist and not resolved.exists():
            raise PathEscapeError(f"path {text!r} does not exist in the workspace")
        return resolved

    def subdir(self, *parts: str) -> Path:
        """A folder inside the workspace (created), each part a checked name."""
        for part in parts:
            check_name(part, "folder name")
        out = self.resolve(Path(*parts))
        out.mkdir(parents=True, exist_ok=True)
        return out

    def relative(self, path: Path) -> str:
        """``path`` relative to the workspace root (for tool outputs)."""
        return str(path.resolve().relative_to(self.root))
