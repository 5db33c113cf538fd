"""Probe features: one vector per example, read at sites and aggregated over answer tokens.

A forward pass of one side of a pair reads the requested sites; the activations of the
masked tokens (by default the assistant answer) are reduced to one vector per example by
``last`` (the last answer token), ``mean`` or ``max`` (element-wise). The default ``torch``
backend stops the forward pass after the deepest requested site; any registered backend
(``nnsight``, ``transformer_lens``) can be used instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from safetensors.torch import load_file, save_file
from torch import Tensor

from auditlens.backends import get_backend
from auditlens.datasets import MaskSpec, Prompt, PromptSet, iter_token_batches, load_prompts
from auditlens.errors import AuditlensError
from auditlens.hashing import sha256_json
from auditlens.models import ModelPair
from auditlens.probes.pairsets import PairSet
from auditlens.progress import progress_bar
from auditlens.sites import Site

__all__ = [
    "AGGREGATIONS",
    "Aggregation",
    "Features",
    "aggregate",
    "parse_mask",
    "read_features",
    "with_question",
]

logger = logging.getLogger(__name__)
Aggregation = Literal["last", "mean", "max"]
AGGREGATIONS: tuple[Aggregation, ...] = ("last", "mean", "max")
SideChoice = Literal["base", "finetuned"]


def aggregate(
    acts: Float[Tensor, "batch seq d_model"], mask: Bool[Tensor, "batch seq"], mode: str
) -> Float[Tensor, "batch d_model"]:
    """Reduce each row's masked tokens to one vector: ``last``, ``mean`` or ``max``."""
    if mode not in AGGREGATIONS:
        raise AuditlensError(f"unknown aggregation {mode!r}; choose {', '.join(AGGREGATIONS)}")
    if acts.shape[:2] != mask.shape:
        raise AuditlensError(f"mask shape {tuple(mask.shape)} does not fit acts {acts.shape}")
    mask = mask.to(acts.device, torch.bool)
    counts = mask.sum(dim=1)
    if bool((counts == 0).any()):
        rows = (counts == 0).nonzero().flatten().tolist()
        raise AuditlensError(
            f"rows {rows} have no tokens under the mask (no assistant answer?); "
            "end each chat with an assistant message or use mask='all'"
        )
    if mode == "mean":
        total = torch.einsum("bsd,bs->bd", acts, mask.to(acts.dtype))
        return total / counts[:, None].to(acts.dtype)
    if mode == "max":
        return acts.masked_fill(~mask[..., None], float("-inf")).amax(dim=1)
    positions = torch.arange(mask.shape[1], device=acts.device).expand_as(mask)
    last = torch.where(mask, positions, -1).amax(dim=1)
    return acts[torch.arange(acts.shape[0], device=acts.device), last]


def parse_mask(mask: MaskSpec | str) -> MaskSpec:
    """A mask from its description: ``all``, ``assistant`` or ``last_K`` (e.g. ``last_4``)."""
    if isinstance(mask, MaskSpec):
        return mask
    if mask.startswith("last_") and mask[5:].isdigit():
        return MaskSpec("last_k", int(mask[5:]))
    if mask not in ("all", "assistant"):
        raise AuditlensError(f"unknown mask {mask!r}; use all, assistant or last_K")
    return MaskSpec(mask)  # type: ignore[arg-type]


def with_question(prompts: PromptSet, question: str) -> PromptSet:
    """Append a user turn (e.g. a yes/no elicitation question) to every chat."""
    out = []
    for p in prompts.prompts:
        if p.messages is None:
            raise AuditlensError("a question can only be appended to chat prompts")
        out.append(Prompt(messages=(*p.messages, ("user", question))))
    return PromptSet(prompts.name, tuple(out))


@dataclass
class Features:
    """Aggregated activations of ``n`` examples, one ``[n, d_model]`` matrix per (site, mode)."""

    values: dict[tuple[str, str], Float[Tensor, "n d_model"]]
    model_sha256: str
    """:attr:`~auditlens.models.ModelSide.fingerprint` of the side that was read."""
    data_sha256: str
    """Hash of the prompts that were read (in order)."""

    @property
    def sites(self) -> list[str]:
        return sorted({s for s, _ in self.values}, key=_site_order)

    @property
    def aggregations(self) -> list[str]:
        return [a for a in AGGREGATIONS if any(m == a for _, m in self.values)]

    @property
    def n(self) -> int:
        return next(iter(self.values.values())).shape[0]

    def get(self, site: str, aggregation: str = "mean") -> Float[Tensor, "n d_model"]:
        """The feature matrix at one site and aggregation."""
        key = (site, aggregation)
        if key not in self.values:
            have = ", ".join(f"{s}:{a}" for s, a in self.values)
            raise AuditlensError(f"no features for {site}:{aggregation}; have {have}")
        return self.values[key]

    def subset(self, index: Sequence[int] | Int[np.ndarray, " k"]) -> Features:
        """The rows at ``index`` (same sites and aggregations)."""
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64))
        return Features({k: v[idx] for k, v in self.values.items()}, self.model_sha256, "")

    def save(self, path: str | Path) -> None:
        """Write all matrices to one safetensors file (hashes in its metadata)."""
        tensors = {f"{s}|{a}": v.contiguous() for (s, a), v in self.values.items()}
        meta = {"model_sha256": self.model_sha256, "data_sha256": self.data_sha256}
        save_file(tensors, str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> Features:
        """Read a file written by :meth:`save`."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
        values = {tuple(k.split("|", 1)): v for k, v in tensors.items()}
        return cls(values, meta.get("model_sha256", ""), meta.get("data_sha256", ""))  # type: ignore[arg-type]


def _site_order(name: str) -> tuple[int, str]:
    parts = name.split(".")
    return (int(parts[1]), name) if len(parts) > 2 and parts[1].isdigit() else (0, name)


def _as_prompt_set(examples: PairSet | PromptSet | Sequence[Any] | str) -> PromptSet:
    if isinstance(examples, PairSet):
        return examples.prompt_set()
    return load_prompts(examples)


def _length_order(prompts: PromptSet) -> list[int]:
    """Prompt indices sorted by text length, so batches hold similar lengths (less padding)."""

    def size(i: int) -> int:
        p = prompts.prompts[i]
        return sum(len(c) for _, c in p.messages) if p.messages else len(p.text or "")

    return sorted(range(len(prompts)), key=size)


def read_features(
    pair: ModelPair,
    examples: PairSet | PromptSet | Sequence[Any] | str,
    sites: Sequence[str | Site] | str,
    *,
    side: SideChoice = "base",
    aggregations: Sequence[str] = ("mean",),
    mask: MaskSpec | str = "assistant",
    question: str | None = None,
    batch_size: int = 8,
    max_length: int = 512,
    backend: str = "torch",
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Features:
    """Read one side of ``pair`` on ``examples`` and aggregate the masked tokens per example.

    ``mask="assistant"`` reads the answer tokens; ``question`` appends a user turn to every
    chat first (read it with ``mask="last_K"``, the last K tokens); ``cache_dir`` keeps the
    result keyed by model, data and settings, so repeated experiments skip the forward passes.
    """
    if side not in ("base", "finetuned"):
        raise AuditlensError(f"side must be 'base' or 'finetuned', got {side!r}")
    for mode in aggregations:
        if mode not in AGGREGATIONS:
            raise AuditlensError(f"unknown aggregation {mode!r}; choose {', '.join(AGGREGATIONS)}")
    if not aggregations:
        raise AuditlensError("give at least one aggregation")
    prompt_set = _as_prompt_set(examples)
    if question is not None:
        prompt_set = with_question(prompt_set, question)
    site_list = pair.sites(sites)
    mask_spec = parse_mask(mask)
    model_side = pair.base if side == "base" else pair.finetuned
    fingerprint = model_side.fingerprint
    cache_file = None
    if cache_dir is not None:
        key = sha256_json(
            {
                "model": fingerprint,
                "data": prompt_set.sha256,
                "sites": [s.name for s in site_list],
                "aggregations": list(aggregations),
                "mask": mask_spec.describe(),
                "max_length": max_length,
            }
        )
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        cache_file = Path(cache_dir) / f"features_{key[:24]}.safetensors"
        if cache_file.is_file():
            return Features.load(cache_file)
    order = _length_order(prompt_set)
    ordered = PromptSet(prompt_set.name, tuple(prompt_set.prompts[i] for i in order))
    runner = get_backend(backend)
    device = pair.device
    parts: dict[tuple[str, str], list[Tensor]] = {
        (s.name, a): [] for s in site_list for a in aggregations
    }
    rows: list[Tensor] = []
    with progress_bar(len(ordered), f"features {prompt_set.name}", enabled=progress) as advance:
        for batch in iter_token_batches(
            ordered, pair.tokenizer, batch_size=batch_size, mask=mask_spec, max_length=max_length
        ):
            ids = batch.input_ids.to(device)
            attn = batch.attention_mask.to(device)
            acts = runner.run(model_side, pair.arch, ids, attn, site_list).acts
            for s in site_list:
                value = acts[s.name].to("cpu", torch.float32)
                if not torch.isfinite(value).all():
                    raise AuditlensError(f"non-finite activations at {s.name}; check the dtype")
                for a in aggregations:
                    parts[(s.name, a)].append(aggregate(value, batch.token_mask, a))
            rows.append(batch.prompt_index)
            advance(ids.shape[0])
    position = torch.cat(rows)  # position k of the output holds ordered prompt position[k]
    inverse = torch.empty_like(position)
    inverse[torch.as_tensor(order)[position]] = torch.arange(len(position))
    values = {key: torch.cat(chunks)[inverse].contiguous() for key, chunks in parts.items()}
    features = Features(values, fingerprint, prompt_set.sha256)
    if cache_file is not None:
        features.save(cache_file)
    return features
