"""The artifact cache's housekeeping: stale artifacts (another code version), abandoned builds
and long-unused ones are found and removed; what this code can serve stays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from auditlens.audit import cache as cache_module
from auditlens.audit.cache import COMPLETE, ArtifactCache
from auditlens.audit.cache_prune import DAY_S, prune, scan


def _build(store: ArtifactCache, kind: str, parts: dict[str, object], size: int = 100) -> Path:
    def build(folder: Path) -> None:
        (folder / "data.bin").write_bytes(b"x" * size)

    _, folder, built = store.get(kind, parts, build, lambda f: f)
    assert built
    return folder


def _age(path: Path, days: float) -> None:
    stamp = time.time() - days * DAY_S
    os.utime(path, (stamp, stamp))


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ArtifactCache:
    store = ArtifactCache(tmp_path / "artifacts")
    _build(store, "adl", {"layer": 3})
    with monkeypatch.context() as m:  # an artifact made by another code version
        m.setattr(cache_module, "code_version", lambda: "0.0.1+elsewhere")
        _build(store, "adl", {"layer": 4}, size=300)
    return store


def test_scan_tells_current_from_stale(store: ArtifactCache) -> None:
    entries = {
        json.loads((e.folder / COMPLETE).read_text())["parts"]["layer"]: e for e in scan(store)
    }
    assert entries[3].state == "current" and entries[4].state == "stale"
    assert entries[4].n_bytes >= 300 and entries[3].n_bytes < entries[4].n_bytes


def test_a_record_that_does_not_match_its_key_is_stale(store: ArtifactCache) -> None:
    current = next(e for e in scan(store) if e.state == "current")
    record = json.loads((current.folder / COMPLETE).read_text())
    record["parts"]["layer"] = 99
    (current.folder / COMPLETE).write_text(json.dumps(record))
    assert {e.state for e in scan(store)} == {"stale"}


def test_prune_removes_stale_after_the_grace_and_keeps_current(store: ArtifactCache) -> None:
    assert prune(store).removed == ()  # both were made just now: another version may use it
    stale = next(e for e in scan(store) if e.state == "stale")
    _age(stale.folder / COMPLETE, 2)
    dry = prune(store, dry_run=True)
    assert [e.folder for e in dry.removed] == [stale.folder] and stale.folder.exists()
    done = prune(store)
    assert done.freed_bytes == stale.n_bytes and not stale.folder.exists()
    assert [e.state for e in scan(store)] == ["current"]


def test_unused_days_removes_current_artifacts_and_a_hit_counts_as_use(
    store: ArtifactCache,
) -> None:
    current = next(e for e in scan(store) if e.state == "current")
    _age(current.folder / COMPLETE, 10)
    _, folder, built = store.get("adl", {"layer": 3}, lambda f: None, lambda f: f)
    assert not built and folder == current.folder
    assert prune(store, unused_days=5).removed == ()  # the hit just now refreshed it
    _age(current.folder / COMPLETE, 10)
    assert [e.folder for e in prune(store, unused_days=5).removed] == [current.folder]
    assert not current.folder.exists()


def test_abandoned_builds_go_only_when_a_day_old(store: ArtifactCache) -> None:
    young = store.directory / "adl" / ".tmp-aaaa-1-bbbb"
    old = store.directory / "adl" / ".tmp-cccc-2-dddd"
    for folder in (young, old):
        folder.mkdir()
        (folder / "partial.bin").write_bytes(b"y" * 10)
    _age(old, 2)
    removed = prune(store).removed
    assert [e.folder for e in removed] == [old] and young.exists() and not old.exists()


def test_negative_days_are_refused(store: ArtifactCache) -> None:
    with pytest.raises(ValueError):
        prune(store, unused_days=-1)


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AUDITLENS_ARTIFACTS": str(tmp_path / "artifacts")}
    env["AUDITLENS_CACHE"] = str(tmp_path)
    return subprocess.run(
        [sys.executable, "-m", "auditlens.cli", "cache", *args],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def test_cli_info_and_prune(store: ArtifactCache, tmp_path: Path) -> None:
    stale = next(e for e in scan(store) if e.state == "stale")
    _age(stale.folder / COMPLETE, 3)
    info = _cli(tmp_path, "info")
    assert info.returncode == 0, info.stderr
    assert "| adl | 1 (" in info.stdout and "stale or abandoned" in info.stdout
    dry = _cli(tmp_path, "prune", "--dry-run")
    assert dry.returncode == 0 and "would remove 1 artifacts" in dry.stdout
    assert stale.folder.exists()
    real = _cli(tmp_path, "prune")
    assert real.returncode == 0 and "removed 1 artifacts" in real.stdout
    assert not stale.folder.exists() and len(scan(store)) == 1
    bad = _cli(tmp_path, "prune", "--unused-days", "-2")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
