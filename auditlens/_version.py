"""The package version (one place; ``pyproject.toml`` carries the same number) and the code
version that cache keys hold."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

__all__ = [
    "CODE_SUFFIXES",
    "PACKAGE_DIRS",
    "__version__",
    "code_roots",
    "code_version",
    "tree_hash",
]

__version__ = "0.1.0"

CODE_SUFFIXES = (".py", ".json", ".jsonl", ".j2", ".css")
"""Files whose contents make the code version (weights are keyed by their own fingerprints)."""
PACKAGE_DIRS = ("auditlens.diffing", "auditlens.adversary", "auditlens.probes", "auditlens.reports")
"""Subpackages that a source checkout keeps outside ``auditlens/`` (pyproject's package-dir)."""


def tree_hash(roots: list[Path]) -> str:
    """A hash of the paths and contents of the code and data files under ``roots``."""
    digest = hashlib.sha256()
    for root in roots:
        digest.update(root.name.encode() + b"\0")
        for path in sorted(root.rglob("*")):
            if path.suffix in CODE_SUFFIXES and path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.relative_to(root).as_posix().encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def code_roots() -> list[Path]:
    """The installed package's folder, plus any subpackage folder outside it (an editable
    install of a source checkout)."""
    main = Path(__file__).resolve().parent
    roots = [main]
    for name in PACKAGE_DIRS:
        spec = importlib.util.find_spec(name)
        for location in (spec.submodule_search_locations or []) if spec else []:
            path = Path(location).resolve()
            if path != main and main not in path.parents and path not in roots:
                roots.append(path)
    return roots


@functools.cache
def code_version() -> str:
    """``<version>+<hash>``: the package version and :func:`tree_hash` of its code. A cache
    keyed by it never serves a result computed by other code, even when an edit did not bump
    the version."""
    return f"{__version__}+{tree_hash(code_roots())}"
