"""What the shared artifact cache holds, and pruning it.

Every artifact's key hashes the code version (:meth:`ArtifactCache.key`), so after an upgrade
or an edit the old artifacts can never be served again; they only take disk. An artifact is
**stale** when its recorded kind and parts no longer hash to its key under the running code.
Its last use is the modification time of its completion record, which a cache hit refreshes.
A stale artifact may still serve another installed version sharing the cache, so it goes only
once unused for ``stale_days`` (default one day); abandoned build folders (``.tmp-*``, left by
a killed process) go once a day old, so a build running in another process is never touched.
Nothing outside the artifact root is read or removed: built organisms, the embedded model
export and step caches in audit folders stay.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from auditlens._version import code_version
from auditlens.audit.cache import COMPLETE, ArtifactCache
from auditlens.hashing import sha256_json

__all__ = ["CacheEntry", "PruneResult", "folder_bytes", "prune", "scan"]

DAY_S = 86_400.0
ABANDONED_AFTER_S = DAY_S
"""A ``.tmp-*`` build folder this old belongs to no running build."""


@dataclass(frozen=True)
class CacheEntry:
    """One folder under the artifact root."""

    kind: str
    folder: Path
    n_bytes: int
    last_used: float
    """Seconds since the epoch (the completion record's mtime; the folder's for a temp)."""
    state: str
    """``current`` (servable by this code), ``stale`` (another code version, or a record that
    does not match its key), or ``abandoned`` (an unfinished build)."""


@dataclass(frozen=True)
class PruneResult:
    removed: tuple[CacheEntry, ...]
    kept: tuple[CacheEntry, ...]

    @property
    def freed_bytes(self) -> int:
        return sum(e.n_bytes for e in self.removed)


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (links not followed)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _state(folder: Path, version: str) -> str:
    try:
        record = json.loads((folder / COMPLETE).read_text())
        rebuilt = sha256_json({"kind": record["kind"], "version": version, **record["parts"]})
    except (OSError, ValueError, KeyError, TypeError):
        return "stale"
    return "current" if str(record.get("key", ""))[:32] == folder.name == rebuilt[:32] else "stale"


def scan(cache: ArtifactCache | None = None) -> list[CacheEntry]:
    """Every artifact folder (and unfinished build) under the cache's root, by kind and name."""
    root = (cache or ArtifactCache()).directory
    version = code_version()
    entries = []
    for kind_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for folder in sorted(p for p in kind_dir.iterdir() if p.is_dir()):
            if folder.name.startswith(".tmp-"):
                state, stamp = "abandoned", folder.stat().st_mtime
            else:
                record = folder / COMPLETE
                stamp = record.stat().st_mtime if record.is_file() else folder.stat().st_mtime
                state = _state(folder, version)
            entries.append(CacheEntry(kind_dir.name, folder, folder_bytes(folder), stamp, state))
    return entries


def prune(
    cache: ArtifactCache | None = None,
    *,
    stale_days: float = 1.0,
    unused_days: float | None = None,
    dry_run: bool = False,
    now: float | None = None,
) -> PruneResult:
    """Remove stale artifacts unused for ``stale_days``, abandoned builds, and (with
    ``unused_days``) current artifacts unused for that long. ``dry_run`` removes nothing and
    reports what would go."""
    if stale_days < 0 or (unused_days is not None and unused_days < 0):
        raise ValueError("stale_days and unused_days must be >= 0")
    clock = time.time() if now is None else now
    limits = {"stale": stale_days * DAY_S, "abandoned": ABANDONED_AFTER_S}
    if unused_days is not None:
        limits["current"] = unused_days * DAY_S
    removed: list[CacheEntry] = []
    kept: list[CacheEntry] = []
    for entry in scan(cache):
        limit = limits.get(entry.state)
        goes = limit is not None and clock - entry.last_used >= limit
        (removed if goes else kept).append(entry)
        if goes and not dry_run:
            shutil.rmtree(entry.folder, ignore_errors=True)
    return PruneResult(tuple(removed), tuple(kept))
