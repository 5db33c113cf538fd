"""The on-disk activation store: safetensors shards of paired activations plus a manifest.

Each shard holds, for every site, ``[n_tokens, 2, d_model]`` (index 0 is the base model,
1 the fine-tuned one), the token ids, positions and prompt indices of those rows, and the
full token ids of its prompts (for showing contexts). ``manifest.json`` records the model
and dataset hashes, the settings, and each shard's prompt range, token count and sha256.

A store may hold a slice of the dataset (its manifest then has ``slice: {start, stop}``):
:func:`merge_stores` joins slice stores harvested by several processes or machines into the
store one process would have written, after checking they come from the same models, data
and settings and together cover the dataset exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from safetensors import SafetensorError, safe_open
from torch import Tensor

from auditlens.errors import StoreError
from auditlens.hashing import sha256_file

__all__ = [
    "MANIFEST",
    "STORE_DTYPES",
    "ActivationStore",
    "TokenContext",
    "merge_stores",
    "read_manifest",
    "shard_is_valid",
    "write_manifest",
]

MANIFEST = "manifest.json"
STORE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read and minimally validate ``manifest.json``."""
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise StoreError(f"{directory} is not an activation store (no {MANIFEST})") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StoreError(f"{path} is corrupt: {err}") from err
    required = ("format", "models", "dataset", "sites", "dtype", "shards")
    missing = [k for k in required if k not in manifest]
    if missing:
        raise StoreError(f"{path} is missing fields: {', '.join(missing)}")
    return manifest


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically (temp file, fsync, rename)."""
    tmp = directory / f".{MANIFEST}.tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(directory / MANIFEST)


def shard_is_valid(directory: Path, shard: dict[str, Any]) -> bool:
    """Whether a shard file exists and matches its recorded sha256."""
    path = directory / shard["file"]
    return path.is_file() and sha256_file(path) == shard["sha256"]


@dataclass(frozen=True)
class TokenContext:
    """A stored token shown in its prompt: token ids around it and the focus offset."""

    prompt_index: int
    position: int
    token_ids: list[int]
    focus: int
    pieces: list[str] | None = None

    def render(self, marker: str = "⟦{}⟧") -> str:
        """The context as text with the focus token marked (needs ``pieces``)."""
        if self.pieces is None:
            raise StoreError("contexts need a tokenizer to render text")
        return "".join(
            marker.format(p) if i == self.focus else p for i, p in enumerate(self.pieces)
        )


class ActivationStore:
    """Read access to a complete harvest: paired activations, tokens and contexts."""

    def __init__(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.directory = directory
        self.manifest = manifest
        self._shard_offsets: list[int] = []
        total = 0
        for shard in manifest["shards"]:
            self._shard_offsets.append(total)
            total += shard["n_tokens"]
        self.n_tokens = total
        self._meta_cache: dict[str, dict[str, Tensor]] = {}

    @classmethod
    def open(cls, directory: str | Path, *, verify: bool = True) -> ActivationStore:
        """Open a store; ``verify`` checks every shard's sha256 (corrupt shards raise)."""
        path = Path(directory)
        manifest = read_manifest(path)
        if not manifest.get("complete"):
            n = manifest["dataset"]["n_prompts"]
            have = sum(s["prompt_end"] - s["prompt_start"] for s in manifest["shards"])
            raise StoreError(
                f"{path} is an incomplete harvest ({have} of {n} prompts); run harvest again "
                "on the same folder to resume"
            )
        for shard in manifest["shards"]:
            if not (path / shard["file"]).is_file():
                raise StoreError(f"{path}: shard {shard['file']} is missing; re-run harvest")
            if verify and not shard_is_valid(path, shard):
                raise StoreError(
                    f"{path}: shard {shard['file']} fails its checksum (corrupt or partial); "
                    "re-run harvest on the same folder to redo it"
                )
        return cls(path, manifest)

    @property
    def sites(self) -> list[str]:
        return list(self.manifest["sites"])

    @property
    def d_model(self) -> int:
        return int(self.manifest["d_model"])

    @property
    def n_prompts(self) -> int:
        return int(self.manifest["dataset"]["n_prompts"])

    def _check_site(self, site: str) -> None:
        if site not in self.manifest["sites"]:
            raise StoreError(f"site {site!r} was not harvested; this store has {self.sites}")

    def _read(self, shard: dict[str, Any], key: str) -> Tensor:
        path = self.directory / shard["file"]
        try:
            with safe_open(str(path), framework="pt") as f:
                return f.get_tensor(key)
        except (SafetensorError, OSError) as err:
            raise StoreError(f"{path}: unreadable shard ({err}); re-run harvest") from err

    def _meta(self, shard: dict[str, Any]) -> dict[str, Tensor]:
        key = shard["file"]
        if key not in self._meta_cache:
            names = ("token_ids", "positions", "prompt_index", "prompt_tokens", "prompt_lengths")
            self._meta_cache[key] = {n: self._read(shard, n) for n in names}
        return self._meta_cache[key]

    def pairs(
        self, site: str, dtype: torch.dtype | None = None
    ) -> Float[Tensor, "n_tokens 2 d_model"]:
        """All stored tokens' paired activations at one site (0 = base, 1 = fine-tuned)."""
        self._check_site(site)
        parts = [self._read(s, site) for s in self.manifest["shards"]]
        out = torch.cat(parts) if parts else torch.empty(0, 2, self.d_model)
        return out if dtype is None else out.to(dtype)

    def iter_batches(
        self,
        site: str,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        drop_last: bool = False,
    ) -> Iterator[Float[Tensor, "batch 2 d_model"]]:
        """Batches for trainers, streamed shard by shard (shuffled within a shard buffer)."""
        self._check_site(site)
        gen = torch.Generator().manual_seed(seed)
        order = list(range(len(self.manifest["shards"])))
        if shuffle:
            order = [order[i] for i in torch.randperm(len(order), generator=gen).tolist()]
        carry: Tensor | None = None
        for idx in order:
            data = self._read(self.manifest["shards"][idx], site).to(dtype)
            if shuffle:
                data = data[torch.randperm(data.shape[0], generator=gen)]
            if carry is not None:
                data = torch.cat([carry, data])
            n_full = data.shape[0] // batch_size * batch_size
            for lo in range(0, n_full, batch_size):
                yield data[lo : lo + batch_size]
            carry = data[n_full:] if n_full < data.shape[0] else None
        if carry is not None and carry.shape[0] and not drop_last:
            yield carry

    def _gather(self, key: str) -> Tensor:
        parts = [self._meta(s)[key] for s in self.manifest["shards"]]
        return torch.cat(parts).long() if parts else torch.empty(0, dtype=torch.long)

    def tokens(self) -> Int[Tensor, " n_tokens"]:
        """Token id of every stored row."""
        return self._gather("token_ids")

    def positions(self) -> Int[Tensor, " n_tokens"]:
        """Position of every stored row within its prompt."""
        return self._gather("positions")

    def prompt_index(self) -> Int[Tensor, " n_tokens"]:
        """Dataset index of the prompt each stored row comes from."""
        return self._gather("prompt_index")

    def prompt_tokens(self, prompt: int) -> list[int]:
        """The full token ids of one prompt."""
        for shard in self.manifest["shards"]:
            if shard["prompt_start"] <= prompt < shard["prompt_end"]:
                meta = self._meta(shard)
                lengths = meta["prompt_lengths"].tolist()
                k = prompt - shard["prompt_start"]
                lo = sum(lengths[:k])
                return meta["prompt_tokens"][lo : lo + lengths[k]].tolist()
        raise StoreError(f"prompt {prompt} is not in this store (0..{self.n_prompts - 1})")

    def contexts(
        self, rows: int | Sequence[int], window: int = 8, tokenizer: Any = None
    ) -> list[TokenContext]:
        """Stored rows shown in context: ``window`` tokens either side of each."""
        wanted = [rows] if isinstance(rows, int) else list(rows)
        prompt_idx, positions = self.prompt_index(), self.positions()
        out = []
        for row in wanted:
            if not 0 <= row < self.n_tokens:
                raise StoreError(f"row {row} out of range (0..{self.n_tokens - 1})")
            p, pos = int(prompt_idx[row]), int(positions[row])
            ids = self.prompt_tokens(p)
            lo, hi = max(0, pos - window), min(len(ids), pos + window + 1)
            ctx = ids[lo:hi]
            pieces = [tokenizer.decode([t]) for t in ctx] if tokenizer is not None else None
            out.append(TokenContext(p, pos, ctx, pos - lo, pieces))
        return out


_MERGE_EQUAL = ("format", "sites", "dtype", "mask", "max_length", "shard_prompts", "d_model")
"""Manifest fields that must be equal in every store merged (besides models and dataset)."""


def _merge_problem(first: dict[str, Any], other: dict[str, Any]) -> str | None:
    for side in ("base", "finetuned"):
        a, b = first["models"][side], other["models"][side]
        for key in ("sha256", "adapter_sha256", "adapter_enabled"):
            if a.get(key) != b.get(key):
                return f"{side} model {key} ({a.get(key)} vs {b.get(key)})"
    for key in ("sha256", "n_prompts"):
        if first["dataset"].get(key) != other["dataset"].get(key):
            return f"dataset {key} ({first['dataset'].get(key)} vs {other['dataset'].get(key)})"
    for key in _MERGE_EQUAL:
        if first.get(key) != other.get(key):
            return f"{key} ({first.get(key)} vs {other.get(key)})"
    return None


def _place(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` when both are on one file system, else copy it."""
    try:
        os.link(src, dst)
    except OSError:
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        tmp.replace(dst)


def merge_stores(
    sources: Sequence[str | Path], out_dir: str | Path, *, overwrite: bool = False
) -> ActivationStore:
    """Join slice stores into one store at ``out_dir`` and open it (checksums verified).

    Every source must be complete and record the same models (weights and adapter hashes),
    dataset hash and size, sites, storage dtype, mask, max length, shard size and d_model;
    together their shards must cover the dataset's prompts exactly once. The shards are
    hard-linked (or copied) in prompt order, and the manifest is the one a single-process
    harvest writes: the merged store equals it byte for byte.
    """
    if not sources:
        raise StoreError("merge_stores needs at least one source store")
    out = Path(out_dir)
    if any(Path(src).resolve() == out.resolve() for src in sources):
        raise StoreError(f"{out} is one of the sources; merge into a new folder")
    manifests = [(Path(src), read_manifest(Path(src))) for src in sources]
    first_dir, first = manifests[0]
    shards: list[tuple[Path, dict[str, Any]]] = []
    for directory, manifest in manifests:
        if not manifest.get("complete"):
            raise StoreError(f"{directory} is an incomplete harvest; finish it before merging")
        problem = _merge_problem(first, manifest)
        if problem:
            raise StoreError(f"{directory} differs from {first_dir} in {problem}; cannot merge")
        for shard in manifest["shards"]:
            if not shard_is_valid(directory, shard):
                raise StoreError(f"{directory}: shard {shard['file']} is missing or corrupt")
            shards.append((directory, shard))
    shards.sort(key=lambda item: item[1]["prompt_start"])
    expected = 0
    for directory, shard in shards:
        if shard["prompt_start"] != expected:
            what = "overlaps" if shard["prompt_start"] < expected else "leaves a gap before"
            raise StoreError(
                f"{directory}: shard {shard['file']} (prompts {shard['prompt_start']}.."
                f"{shard['prompt_end']}) {what} prompt {expected}; the slices must cover the "
                "dataset exactly once"
            )
        expected = shard["prompt_end"]
    n_prompts = int(first["dataset"]["n_prompts"])
    if expected != n_prompts:
        raise StoreError(
            f"the stores cover prompts 0..{expected} of {n_prompts}; a slice is missing"
        )
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise StoreError(f"{out} is not empty; use another folder or overwrite=True")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    for directory, shard in shards:
        _place(directory / shard["file"], out / shard["file"])
    merged = {k: v for k, v in first.items() if k != "slice"}
    merged["shards"] = [dict(shard) for _, shard in shards]
    merged["complete"] = True
    merged["n_tokens"] = sum(shard["n_tokens"] for _, shard in shards)
    write_manifest(out, merged)
    return ActivationStore.open(out, verify=True)
