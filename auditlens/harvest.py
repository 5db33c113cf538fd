"""Paired activation harvesting: both models on the same tokens, streamed to disk.

``iter_paired`` runs base and fine-tuned on each batch and yields their activations side by
side. ``harvest`` writes the masked tokens to safetensors shards plus a JSON manifest; it
resumes after an interruption and redoes any shard whose checksum fails.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors.torch import save_file
from torch import Tensor

from auditlens.backends import get_backend
from auditlens.datasets import MaskSpec, PromptSet, TokenBatch, iter_token_batches, load_prompts
from auditlens.errors import AuditlensError, StoreError
from auditlens.hashing import sha256_file
from auditlens.models import ModelPair
from auditlens.progress import progress_bar
from auditlens.sites import Site
from auditlens.store import (
    MANIFEST,
    STORE_DTYPES,
    ActivationStore,
    read_manifest,
    shard_is_valid,
    write_manifest,
)

__all__ = ["PairedBatch", "harvest", "iter_paired"]

logger = logging.getLogger(__name__)


@dataclass
class PairedBatch:
    """One batch of both models' activations; ``acts[site]`` is ``[batch, seq, 2, d_model]``."""

    batch: TokenBatch
    acts: dict[str, Float[Tensor, "batch seq 2 d_model"]]
    logits: tuple[Tensor, Tensor] | None


def _check_finite(name: str, value: Tensor) -> None:
    if not torch.isfinite(value).all():
        raise AuditlensError(f"non-finite activations (NaN/inf) at {name}; check the model dtype")


def iter_paired(
    pair: ModelPair,
    prompts: PromptSet | Sequence[Any] | str,
    sites: Sequence[str | Site] | str,
    *,
    batch_size: int = 8,
    mask: MaskSpec | str = "all",
    max_length: int = 512,
    logits: bool = False,
    backend: str = "nnsight",
    start: int = 0,
    stop: int | None = None,
) -> Iterator[PairedBatch]:
    """Run both sides on each batch and yield paired activations (and logits if asked)."""
    prompt_set = load_prompts(prompts)
    site_list = pair.sites(sites) if sites else []
    mask_spec = mask if isinstance(mask, MaskSpec) else MaskSpec(mask)  # type: ignore[arg-type]
    runner = get_backend(backend)
    device = pair.device
    for batch in iter_token_batches(
        prompt_set,
        pair.tokenizer,
        batch_size=batch_size,
        mask=mask_spec,
        max_length=max_length,
        start=start,
        stop=stop,
    ):
        ids = batch.input_ids.to(device)
        attn = batch.attention_mask.to(device)
        reads = [
            runner.run(side, pair.arch, ids, attn, site_list, logits=logits) for side in pair.sides
        ]
        acts = {}
        for site in site_list:
            both = torch.stack([reads[0].acts[site.name], reads[1].acts[site.name]], dim=2)
            _check_finite(site.name, both)
            acts[site.name] = both
        pair_logits = None
        if logits:
            assert reads[0].logits is not None and reads[1].logits is not None
            pair_logits = (reads[0].logits, reads[1].logits)
        yield PairedBatch(batch, acts, pair_logits)


def _identity(
    pair: ModelPair,
    prompts: PromptSet,
    sites: list[Site],
    dtype: str,
    mask: MaskSpec,
    max_length: int,
    shard_prompts: int,
) -> dict[str, Any]:
    def side_info(side: Any) -> dict[str, Any]:
        return {
            "label": side.label,
            "sha256": side.sha256,
            "adapter_sha256": side.adapter_sha256,
            "adapter_enabled": side.adapter_enabled,
        }

    return {
        "models": {"base": side_info(pair.base), "finetuned": side_info(pair.finetuned)},
        "dataset": {"name": prompts.name, "sha256": prompts.sha256, "n_prompts": len(prompts)},
        "sites": [s.name for s in sites],
        "dtype": dtype,
        "mask": mask.describe(),
        "max_length": max_length,
        "shard_prompts": shard_prompts,
        "d_model": pair.d_model,
    }


def _mismatch(existing: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    for key, value in wanted.items():
        if key == "models":
            for side in ("base", "finetuned"):
                have, want = existing["models"][side], value[side]
                for field in ("sha256", "adapter_sha256", "adapter_enabled"):
                    if have.get(field) != want.get(field):
                        return f"{side} model {field} ({have.get(field)} vs {want.get(field)})"
        elif key == "dataset":
            if existing["dataset"]["sha256"] != value["sha256"]:
                return f"dataset ({existing['dataset']['name']} vs {value['name']}, hashes differ)"
        elif existing.get(key) != value:
            return f"{key} ({existing.get(key)} vs {value})"
    return None


def harvest(
    pair: ModelPair,
    prompts: PromptSet | Sequence[Any] | str,
    sites: Sequence[str | Site] | str,
    out_dir: str | Path,
    *,
    batch_size: int = 8,
    shard_prompts: int | None = None,
    dtype: str = "float32",
    mask: MaskSpec | str = "all",
    max_length: int = 512,
    backend: str = "nnsight",
    overwrite: bool = False,
    progress: bool = True,
    on_shard: Callable[[int], None] | None = None,
) -> ActivationStore:
    """Harvest paired activations at ``sites`` into ``out_dir`` and open the result.

    Re-running on the same folder resumes: complete shards are kept, missing or corrupt ones
    are (re)computed. A folder harvested for other models, data or settings is an error.
    """
    if dtype not in STORE_DTYPES:
        raise AuditlensError(f"unknown storage dtype {dtype!r}; choose {', '.join(STORE_DTYPES)}")
    prompt_set = load_prompts(prompts)
    site_list = pair.sites(sites)
    mask_spec = mask if isinstance(mask, MaskSpec) else MaskSpec(mask)  # type: ignore[arg-type]
    shard_prompts = shard_prompts or batch_size * 8
    if shard_prompts % batch_size:
        raise AuditlensError("shard_prompts must be a multiple of batch_size")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ident = _identity(pair, prompt_set, site_list, dtype, mask_spec, max_length, shard_prompts)
    manifest = read_manifest(out) if (out / MANIFEST).exists() and not overwrite else None
    if manifest is not None:
        problem = _mismatch(manifest, ident)
        if problem:
            raise StoreError(
                f"{out} holds a harvest with a different {problem}; "
                "use another folder or overwrite=True (CLI: --overwrite)"
            )
    else:
        manifest = {"format": 1, **ident, "shards": [], "complete": False}
    kept = []
    for shard in manifest["shards"]:
        if shard_is_valid(out, shard):
            kept.append(shard)
        else:
            logger.warning("shard %s is missing or corrupt; it will be redone", shard["file"])
    manifest["shards"] = kept
    done = {s["prompt_start"] for s in kept}
    todo = [lo for lo in range(0, len(prompt_set), shard_prompts) if lo not in done]
    manifest["complete"] = False
    write_manifest(out, manifest)
    storage = STORE_DTYPES[dtype]
    with progress_bar(len(prompt_set), f"harvest {out.name}", enabled=progress) as advance:
        advance(sum(s["prompt_end"] - s["prompt_start"] for s in kept))
        for lo in todo:
            hi = min(lo + shard_prompts, len(prompt_set))
            shard = _harvest_shard(
                pair, prompt_set, site_list, out, lo, hi, batch_size, mask_spec, max_length,
                backend, storage, advance,
            )  # fmt: skip
            manifest["shards"].append(shard)
            manifest["shards"].sort(key=lambda s: s["prompt_start"])
            write_manifest(out, manifest)
            if on_shard is not None:
                on_shard(len(manifest["shards"]))
    manifest["n_tokens"] = sum(s["n_tokens"] for s in manifest["shards"])
    manifest["complete"] = True
    write_manifest(out, manifest)
    return ActivationStore.open(out, verify=False)


def _harvest_shard(
    pair: ModelPair,
    prompts: PromptSet,
    sites: list[Site],
    out: Path,
    lo: int,
    hi: int,
    batch_size: int,
    mask: MaskSpec,
    max_length: int,
    backend: str,
    storage: torch.dtype,
    advance: Callable[[int], None],
) -> dict[str, Any]:
    chunks: dict[str, list[Tensor]] = {s.name: [] for s in sites}
    token_ids: list[Tensor] = []
    positions: list[Tensor] = []
    prompt_index: list[Tensor] = []
    prompt_tokens: list[Tensor] = []
    prompt_lengths: list[int] = []
    for paired in iter_paired(
        pair, prompts, sites, batch_size=batch_size, mask=mask, max_length=max_length,
        backend=backend, start=lo, stop=hi,
    ):  # fmt: skip
        b = paired.batch
        sel = b.token_mask
        rows, cols = sel.nonzero(as_tuple=True)
        for name, value in paired.acts.items():
            chunks[name].append(value[sel.to(value.device)].to("cpu", storage))
        token_ids.append(b.input_ids[rows, cols].to(torch.int32))
        positions.append(cols.to(torch.int32))
        prompt_index.append(b.prompt_index[rows].to(torch.int32))
        for row in range(b.input_ids.shape[0]):
            n = int(b.attention_mask[row].sum())
            prompt_tokens.append(b.input_ids[row, :n].to(torch.int32))
            prompt_lengths.append(n)
        advance(b.input_ids.shape[0])
    tensors = {name: torch.cat(parts).contiguous() for name, parts in chunks.items()}
    tensors["token_ids"] = torch.cat(token_ids)
    tensors["positions"] = torch.cat(positions)
    tensors["prompt_index"] = torch.cat(prompt_index)
    tensors["prompt_tokens"] = torch.cat(prompt_tokens)
    tensors["prompt_lengths"] = torch.tensor(prompt_lengths, dtype=torch.int32)
    name = f"shard_{lo:08d}.safetensors"
    tmp = out / f".{name}.tmp"
    save_file(tensors, str(tmp), metadata={"prompt_start": str(lo), "prompt_end": str(hi)})
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(out / name)
    return {
        "file": name,
        "prompt_start": lo,
        "prompt_end": hi,
        "n_tokens": int(tensors["token_ids"].numel()),
        "sha256": sha256_file(out / name),
        "tokens_sha256": _tensor_hash(tensors["token_ids"]),
    }


def _tensor_hash(t: Tensor) -> str:
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()
