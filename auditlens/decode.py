"""The decode loop behind :mod:`auditlens.generate`: batches planned, decoded, rows retired.

One left-padded batch at a time: prefill (optionally after a shared prompt prefix), then one
token per step for the rows still running, greedy (argmax of fp32 logits) or sampled from a
per-row generator. Rows that hit EOS leave the batch once they are ``RETIRE_FRACTION`` of it.
Objects that track which rows the batch holds (the per-row LoRA mixer and steering in
:mod:`auditlens.row_state`) are told before every forward pass.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from torch import Tensor

from auditlens.errors import AuditlensError
from auditlens.execution import auto_batch_size
from auditlens.kv_cache import cache_select, can_select_rows, make_cache

__all__ = [
    "BatchSize",
    "Row",
    "RowListener",
    "Settings",
    "plan_batches",
    "run_rows",
    "takes_argument",
]

BatchSize = int | Literal["auto"]
RowCallback = Callable[[str, int, list[int], list[str]], None]
Engine = Literal["fast", "hf"]
MIN_SHARED_PREFIX = 8
"""Shortest common prompt prefix worth computing once per batch (``share_prefix``)."""
RETIRE_FRACTION = 0.25
"""Finished rows leave the batch once they are this fraction of it (each compaction copies
the KV cache once, so compacting on every finished row would cost more than it saves)."""


class RowListener(Protocol):
    """Told which rows the batch holds (in tensor order) before each forward pass."""

    def set_rows(self, rows: list[Row]) -> None: ...

    def attached(self) -> AbstractContextManager[None]: ...


# --------------------------------------------------------------------------------------------
# Planning


@dataclass(frozen=True)
class Row:
    """One generation: its side, steering variant and prompt index (which also seeds its
    sampling), the adapter it runs with in a mixed batch, and its prompt's token ids."""

    side: str
    variant: int
    prompt: int
    adapter: str | None
    ids: list[int]


@dataclass(frozen=True)
class Settings:
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int
    batch_size: BatchSize
    sort_by_length: bool
    retire_finished: bool
    token_budget: int | None
    share_prefix: bool = False

    @classmethod
    def make(
        cls,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        seed: int,
        batch_size: BatchSize,
        sort_by_length: bool | None,
        retire_finished: bool | None,
        token_budget: int | None,
        share_prefix: bool = False,
    ) -> Settings:
        auto = batch_size == "auto"
        return cls(
            max_new_tokens,
            temperature,
            top_p,
            seed,
            batch_size,
            auto if sort_by_length is None else sort_by_length,
            auto if retire_finished is None else retire_finished,
            token_budget,
            share_prefix,
        )


def plan_batches(
    lengths: Sequence[int],
    rows_for: Callable[[int, int], int],
    *,
    sort_by_length: bool,
) -> list[list[int]]:
    """Split row indices into batches.

    ``rows_for(longest, remaining)`` gives the most rows a batch whose longest prompt has
    ``longest`` tokens may hold. Sorted: longest prompts first (ties in input order), so a
    batch pads little and the memory peak comes first; else consecutive rows in input order.
    """
    order = list(range(len(lengths)))
    if sort_by_length:
        order.sort(key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    pos = 0
    while pos < len(order):
        batch = [order[pos]]
        longest = lengths[order[pos]]
        remaining = len(order) - pos
        while len(batch) < remaining:
            wider = max(longest, lengths[order[pos + len(batch)]])
            if len(batch) + 1 > rows_for(wider, remaining):
                break
            batch.append(order[pos + len(batch)])
            longest = wider
        batches.append(batch)
        pos += len(batch)
    return batches


def common_prefix(rows: list[list[int]]) -> int:
    """Length of the token prefix all rows share, leaving each row at least one token."""
    shortest = min(len(r) for r in rows)
    n = 0
    first = rows[0]
    while n < shortest - 1 and all(r[n] == first[n] for r in rows):
        n += 1
    return n


def encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    enc = tokenizer(texts, add_special_tokens=False)
    return [list(ids) for ids in enc["input_ids"]]


def row_seed(seed: int, prompt: int) -> int:
    digest = hashlib.sha256(f"auditlens-generate:{seed}:{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


# --------------------------------------------------------------------------------------------
# The decode loop


@contextmanager
def no_grad() -> Iterator[None]:
    with torch.inference_mode():
        yield


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """EOS ids as transformers' generate uses them (the generation config, else the tokenizer)."""
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None) if config is not None else None
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return set()
    return {int(e) for e in eos} if isinstance(eos, (list, tuple)) else {int(eos)}


def takes_argument(model: Any, name: str) -> bool:
    """Whether ``model.forward`` takes the keyword ``name`` (``logits_to_keep``, ...)."""
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def run_rows(
    model: Any,
    tokenizer: Any,
    rows: list[Row],
    settings: Settings,
    listeners: list[RowListener],
    callback: RowCallback | None,
) -> list[str]:
    """Generate every row; returns the texts in the order of ``rows``."""
    out: list[str] = [""] * len(rows)
    if not rows:
        return out
    lengths = [len(r.ids) for r in rows]
    if min(lengths) == 0:
        raise AuditlensError("a prompt rendered to zero tokens")
    max_new = settings.max_new_tokens

    def rows_for(longest: int, remaining: int) -> int:
        if settings.batch_size != "auto":
            return min(settings.batch_size, remaining)
        return auto_batch_size(
            model,
            max(longest, 1),
            max_new,
            n_rows=remaining,
            token_budget=settings.token_budget,
        )

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    decoder = Decoder(model, _eos_ids(model, tokenizer), int(pad_id), settings, listeners)
    for batch_idx in plan_batches(lengths, rows_for, sort_by_length=settings.sort_by_length):
        batch = [rows[i] for i in batch_idx]
        tokens = decoder.run(batch)
        decoded = [tokenizer.decode(t, skip_special_tokens=True) for t in tokens]
        for i, text in zip(batch_idx, decoded, strict=True):
            out[i] = text
        if callback is not None:
            groups: dict[tuple[str, int], tuple[list[int], list[str]]] = {}
            for row, text in zip(batch, decoded, strict=True):
                keys, texts = groups.setdefault((row.side, row.variant), ([], []))
                keys.append(row.prompt)
                texts.append(text)
            for (side_name, variant), (keys, texts) in groups.items():
                callback(side_name, variant, keys, texts)
    return out


class Decoder:
    """Greedy or sampled decoding of one left-padded batch with a preallocated KV cache."""

    def __init__(
        self,
        model: Any,
        eos: set[int],
        pad_id: int,
        settings: Settings,
        listeners: list[RowListener],
    ) -> None:
        self.model = model
        self.eos = eos
        self.pad_id = pad_id
        self.settings = settings
        self.listeners = listeners
        self.device = next(model.parameters()).device
        self.logits_kwargs = (
            {"logits_to_keep": 1} if takes_argument(model, "logits_to_keep") else {}
        )

    def _forward(self, ids: Tensor, attn: Tensor, pos: Tensor, cache: Any) -> Tensor:
        out = self.model(
            input_ids=ids,
            attention_mask=attn,
            position_ids=pos,
            past_key_values=cache,
            use_cache=True,
            **self.logits_kwargs,
        )
        return out.logits[:, -1].to(dtype=torch.float32, copy=True)

    def run(self, batch: list[Row]) -> list[list[int]]:
        s = self.settings
        n = len(batch)
        prefix = common_prefix([r.ids for r in batch]) if s.share_prefix and n > 1 else 0
        if prefix < MIN_SHARED_PREFIX:
            prefix = 0
        cache = make_cache(self.model, max(len(r.ids) for r in batch) + s.max_new_tokens)
        selectable = can_select_rows(cache)
        if not selectable:
            prefix = 0
        width = max(len(r.ids) for r in batch) - prefix
        if prefix:
            self._prefill_prefix(batch, prefix, cache)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((n, prefix + width), dtype=torch.long)
        attn[:, :prefix] = 1
        for j, row in enumerate(batch):
            suffix = row.ids[prefix:]
            ids[j, width - len(suffix) :] = torch.tensor(suffix, dtype=torch.long)
            attn[j, prefix + width - len(suffix) :] = 1
        ids, attn = ids.to(self.device), attn.to(self.device)
        pos = (attn.cumsum(-1) - 1).masked_fill(attn == 0, 0)[:, prefix:]
        pick = self._picker(batch)
        alive = list(range(n))  # batch rows still in the tensors, in tensor order
        done = [False] * n
        tokens: list[list[int]] = [[] for _ in range(n)]
        for listener in self.listeners:
            listener.set_rows([batch[j] for j in alive])
        logits = self._forward(ids, attn, pos, cache)
        for step in range(s.max_new_tokens):
            nxt = pick(logits, alive)
            values = nxt.tolist()
            for j, tok in zip(alive, values, strict=True):
                if done[j]:
                    continue
                tokens[j].append(tok)
                if tok in self.eos:
                    done[j] = True
            n_done = sum(done[j] for j in alive)
            if n_done == len(alive) or step == s.max_new_tokens - 1:
                break
            retire = s.retire_finished and selectable and n_done
            if retire and n_done >= RETIRE_FRACTION * len(alive):
                keep = [k for k, j in enumerate(alive) if not done[j]]
                index = torch.tensor(keep, device=self.device)
                cache_select(cache, index)
                attn, pos, nxt = attn[index], pos[index], nxt[index]
                alive = [alive[k] for k in keep]
                for listener in self.listeners:
                    listener.set_rows([batch[j] for j in alive])
            attn = torch.cat([attn, attn.new_ones((attn.shape[0], 1))], dim=-1)
            pos = pos[:, -1:] + 1
            logits = self._forward(nxt[:, None], attn, pos, cache)
        return tokens

    def _prefill_prefix(self, batch: list[Row], prefix: int, cache: Any) -> None:
        """Run the shared prompt prefix once per distinct (adapter, steering variant) and
        copy its KV cache to every row of the batch."""
        classes: dict[tuple[str | None, int], int] = {}
        of_row = [classes.setdefault((r.adapter, r.variant), len(classes)) for r in batch]
        reps = [next(r for r in batch if (r.adapter, r.variant) == key) for key in classes]
        ids = torch.tensor([batch[0].ids[:prefix]] * len(reps), dtype=torch.long)
        attn = torch.ones_like(ids)
        pos = torch.arange(prefix).expand(len(reps), prefix)
        for listener in self.listeners:
            listener.set_rows(reps)
        self._forward(ids.to(self.device), attn.to(self.device), pos.to(self.device), cache)
        cache_select(cache, torch.tensor(of_row, device=self.device))

    def _picker(self, batch: list[Row]) -> Callable[[Tensor, list[int]], Tensor]:
        s = self.settings
        if s.temperature == 0:
            return lambda logits, alive: logits.argmax(dim=-1)
        gen_device = self.device if self.device.type == "cuda" else torch.device("cpu")
        gens = [
            torch.Generator(device=gen_device).manual_seed(row_seed(s.seed, r.prompt))
            for r in batch
        ]

        def pick(logits: Tensor, alive: list[int]) -> Tensor:
            scores = logits / s.temperature
            if s.top_p < 1.0:
                scores = _top_p(scores, s.top_p)
            probs = scores.softmax(dim=-1).to(gen_device)
            drawn = [torch.multinomial(probs[k], 1, generator=gens[j]) for k, j in enumerate(alive)]
            return torch.cat(drawn).to(logits.device)

        return pick


def _top_p(scores: Tensor, top_p: float) -> Tensor:
    """Nucleus filtering as transformers' ``TopPLogitsWarper`` (keeps at least one token)."""
    sorted_logits, sorted_idx = torch.sort(scores, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - top_p)
    remove_sorted[..., -1:] = False
    remove = remove_sorted.scatter(1, sorted_idx, remove_sorted)
    return scores.masked_fill(remove, -float("inf"))
