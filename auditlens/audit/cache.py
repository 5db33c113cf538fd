"""Caches: a step's output under its key, and expensive artifacts shared across audits and
the agent tools.

**Step key** (:func:`step_key`): the code version (:func:`auditlens._version.code_version`,
the package version and a hash of its code, so an edit never reuses an old output), the step's
name and settings, both models' weight fingerprints with their dtype, the prompt *contents*
(when the step reads them) and the keys of the steps it reads. A step's output and artifacts
live in ``OUT/steps/<name>/<key>/``, written in a temporary folder and renamed into place, so a
finding only ever cites artifacts computed with it.

**Artifact cache** (:class:`ArtifactCache`): harvested stores, crosscoders, ADL results and
MELBO vectors, each in ``ROOT/<kind>/<key>/`` where the key hashes the code version, the
pair, the site(s), the method settings and the prompt contents. The root is
``$AUDITLENS_ARTIFACTS``, else ``<auditlens cache>/artifacts``. The audit's diffing step and
the agent tools ask it for the same objects, so a crosscoder latent id in a report is the same
latent in ``latent_details`` and ``steer_generate(vector="latent:ID")``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from auditlens._version import code_version
from auditlens.hashing import sha256_json
from auditlens.models import ModelPair
from auditlens.paths import cache_dir

__all__ = ["COMPLETE", "ArtifactCache", "as_json", "link_tree", "pair_identity", "step_key"]

T = TypeVar("T")
COMPLETE = "_complete.json"


def as_json(obj: Any) -> Any:
    """Settings (dataclasses, tuples, paths, nested) as plain JSON for hashing."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: as_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): as_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [as_json(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot hash a setting of type {type(obj).__name__}")


def pair_identity(pair: ModelPair) -> dict[str, Any]:
    """What makes two pairs compute the same: effective weights and the compute dtype."""
    dtype = str(next(pair.base.hf.parameters()).dtype)
    return {"base": pair.base.fingerprint, "finetuned": pair.finetuned.fingerprint, "dtype": dtype}


def step_key(
    name: str,
    settings: Any,
    pair: ModelPair,
    prompts_sha256: str | None,
    needs: Mapping[str, str],
) -> str:
    """The cache key of one step's output (see the module docstring)."""
    return sha256_json(
        {
            "version": code_version(),
            "step": name,
            "settings": as_json(settings),
            "pair": pair_identity(pair),
            "prompts": prompts_sha256,
            "needs": dict(needs),
        }
    )


def link_tree(src: Path, dst: Path) -> Path:
    """Hard-link (or, across devices, copy) every file of ``src`` into ``dst``."""
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.unlink()
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
    return dst


class ArtifactCache:
    """Expensive artifacts by key, built once (atomically) and shared."""

    def __init__(self, root: str | Path | None = None) -> None:
        env = os.environ.get("AUDITLENS_ARTIFACTS")
        self.root = Path(root) if root is not None else Path(env) if env else None

    @property
    def directory(self) -> Path:
        root = self.root if self.root is not None else cache_dir() / "artifacts"
        root.mkdir(parents=True, exist_ok=True)
        return root

    def key(self, kind: str, parts: Mapping[str, Any]) -> str:
        return sha256_json({"kind": kind, "version": code_version(), **as_json(parts)})

    def folder(self, kind: str, key: str) -> Path:
        return self.directory / kind / key[:32]

    def get(
        self,
        kind: str,
        parts: Mapping[str, Any],
        build: Callable[[Path], Any],
        load: Callable[[Path], T],
    ) -> tuple[T, Path, bool]:
        """``load(folder)`` of the artifact keyed by ``parts``, building it first if needed.

        ``build(folder)`` writes the artifact into an empty temporary folder; on success the
        folder is renamed into place. Returns (object, folder, whether it was built now).
        """
        key = self.key(kind, parts)
        folder = self.folder(kind, key)
        built = False
        if not (folder / COMPLETE).is_file():
            tmp = folder.parent / f".tmp-{key[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir(parents=True)
            try:
                build(tmp)
                record = {"kind": kind, "key": key, "parts": as_json(parts)}
                (tmp / COMPLETE).write_text(json.dumps(record, indent=1))
                if not (folder / COMPLETE).is_file():  # else another process finished first
                    if folder.exists():  # a stale, incomplete attempt
                        shutil.rmtree(folder, ignore_errors=True)
                    os.replace(tmp, folder)
                    built = True
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        else:
            _touch(folder / COMPLETE)
        return load(folder), folder, built


def _touch(record: Path) -> None:
    """Mark an artifact used now (what ``auditlens cache prune --unused-days`` reads)."""
    with contextlib.suppress(OSError):  # a read-only shared cache still serves
        os.utime(record)
