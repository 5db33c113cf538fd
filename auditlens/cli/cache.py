"""``auditlens cache info`` and ``auditlens cache prune``: the shared artifact cache's disk use,
and removing what the running code can no longer serve."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Annotated

import typer

from auditlens.audit.cache import ArtifactCache
from auditlens.audit.cache_prune import CacheEntry, folder_bytes, prune, scan
from auditlens.cli._common import app
from auditlens.errors import AuditlensError
from auditlens.paths import cache_dir

__all__ = ["cache_app"]

cache_app = typer.Typer(
    help="The shared artifact cache (crosscoders, ADL, MELBO, stores, generations).",
    no_args_is_help=True,
)
STATES = ("current", "stale", "abandoned")


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:,.1f} MB"


def _table(entries: Sequence[CacheEntry]) -> list[str]:
    rows: dict[str, dict[str, list[int]]] = defaultdict(lambda: {s: [0, 0] for s in STATES})
    for e in entries:
        rows[e.kind][e.state][0] += 1
        rows[e.kind][e.state][1] += e.n_bytes
    lines = ["| kind | current | stale | abandoned |", "|---|---|---|---|"]
    for kind in sorted(rows):
        cells = [f"{n} ({_mb(b)})" for n, b in (rows[kind][s] for s in STATES)]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return lines


@cache_app.command("info")
def cache_info() -> None:
    """What the artifact cache holds: per kind, current (servable by this code), stale and
    abandoned artifacts with their sizes."""
    store = ArtifactCache()
    entries = scan(store)
    typer.echo(f"artifact cache: {store.directory}")
    typer.echo("\n".join(_table(entries)))
    total = sum(e.n_bytes for e in entries)
    freeable = sum(e.n_bytes for e in entries if e.state != "current")
    typer.echo(f"total {_mb(total)}, of which stale or abandoned {_mb(freeable)}")
    others = [p for p in sorted(cache_dir().iterdir()) if p.is_dir() and p != store.directory]
    for folder in others:
        typer.echo(f"not pruned: {folder} ({_mb(folder_bytes(folder))})")


@cache_app.command("prune")
def cache_prune(
    stale_days: Annotated[
        float,
        typer.Option(
            "--stale-days",
            help="Remove stale artifacts (other code versions) unused for this many days.",
        ),
    ] = 1.0,
    unused_days: Annotated[
        float | None,
        typer.Option(
            "--unused-days", help="Also remove current artifacts unused for this many days."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")
    ] = False,
) -> None:
    """Remove stale artifacts (made by other code versions; another installed version sharing
    the cache may still use them, hence --stale-days), builds abandoned over a day ago, and with
    --unused-days current artifacts unused that long. Built organisms, the embedded model and
    audit folders are never touched."""
    if stale_days < 0 or (unused_days is not None and unused_days < 0):
        raise AuditlensError("--stale-days and --unused-days must be 0 or more")
    result = prune(stale_days=stale_days, unused_days=unused_days, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    now = time.time()
    for e in result.removed:
        age = (now - e.last_used) / 86_400
        typer.echo(f"{verb} {e.kind}/{e.folder.name} ({e.state}, {_mb(e.n_bytes)}, {age:.1f} d)")
    typer.echo(
        f"{verb} {len(result.removed)} artifacts, {_mb(result.freed_bytes)}; "
        f"kept {len(result.kept)} ({_mb(sum(e.n_bytes for e in result.kept))})"
    )


app.add_typer(cache_app, name="cache")
