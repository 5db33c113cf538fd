"""Content hashes that tie activation stores and results to exact weights and data."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from auditlens.paths import cache_dir

__all__ = ["sha256_file", "sha256_files", "sha256_json", "state_dict_sha256"]

_CHUNK = 1 << 22


def sha256_file(path: str | Path) -> str:
    """The sha256 of one file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_files(paths: Iterable[str | Path], *, cached: bool = True) -> str:
    """One sha256 over several files (sorted by name), memoised by (path, size, mtime)."""
    files = sorted(Path(p).resolve() for p in paths)
    memo_path = cache_dir() / "file_hashes.json"
    memo: dict[str, str] = {}
    if cached and memo_path.exists():
        try:
            memo = json.loads(memo_path.read_text())
        except (OSError, json.JSONDecodeError):
            memo = {}
    outer = hashlib.sha256()
    changed = False
    for f in files:
        st = f.stat()
        key = f"{f}|{st.st_size}|{st.st_mtime_ns}"
        digest = memo.get(key)
        if digest is None:
            digest = sha256_file(f)
            memo[key] = digest
            changed = True
        outer.update(f.name.encode())
        outer.update(digest.encode())
    if cached and changed:
        tmp = memo_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(memo))
        tmp.replace(memo_path)
    return outer.hexdigest()


def sha256_json(obj: Any) -> str:
    """The sha256 of an object's canonical JSON form."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def state_dict_sha256(module: torch.nn.Module) -> str:
    """The sha256 of a module's parameters and buffers (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
