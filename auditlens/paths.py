"""Where auditlens keeps its cache (dequantized models, weight hashes)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """The user cache folder: ``$AUDITLENS_CACHE``, else ``$XDG_CACHE_HOME/auditlens``."""
    env = os.environ.get("AUDITLENS_CACHE")
    if env:
        path = Path(env).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "auditlens"
    path.mkdir(parents=True, exist_ok=True)
    return path
