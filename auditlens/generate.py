"""Batched text generation from one side of a pair, or from both at once (greedy or sampled).

Two engines give the same greedy text:

- ``fast`` (the default): our own decode loop. The KV cache is preallocated for
  ``prompt + max_new_tokens`` (no ``torch.cat`` of the whole cache per token), rows that hit
  EOS can leave the batch (``retire_finished``), prompts can be sorted by length into batches
  (``sort_by_length``; results come back in input order), and ``batch_size="auto"`` sizes
  batches by free device memory or a CPU token budget (:mod:`auditlens.execution`).
  :func:`generate_pair` puts the base and fine-tuned rows of an adapter pair into the *same*
  batches (per-row LoRA on/off), so each weight is read once per step for both sides.
- ``hf``: transformers' ``generate`` on batches of ``batch_size`` in input order: the
  reference the fast engine is tested against.

Greedy text does not depend on how rows are batched: on the CPU, fp32 kernels give each row
the same result whatever its batch neighbours and padding (checked on the embedded model
with the shipped adapter: batch 1, 8 and 40, sorted or not, with retirement or not, give the
same 40 x 96-token generations; tests/test_generate.py checks it on tiny models). With an
integer ``batch_size`` the fast engine keeps transformers' batch shapes by default (input
order, no retirement), so even hooks that draw random noise per forward call (activation
noise) see exactly the calls they saw before. ``batch_size="auto"`` switches sorting and
retirement on; pass them explicitly to choose.

Sampling (``temperature > 0``) draws each row from its own generator seeded by ``(seed,
prompt index)``, so samples are reproducible and do not depend on batching either; the two
sides of a pair share a prompt's random numbers (common random numbers for paired tests).
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from auditlens.datasets import Prompt, PromptSet, load_prompts
from auditlens.errors import AuditlensError
from auditlens.execution import auto_batch_size

if TYPE_CHECKING:
    from auditlens.models import ModelPair, ModelSide

__all__ = [
    "BatchSize",
    "Engine",
    "chat_prompt",
    "generate",
    "generate_pair",
    "plan_batches",
]

Engine = Literal["fast", "hf"]
BatchSize = int | Literal["auto"]
RETIRE_FRACTION = 0.25
"""Finished rows leave the batch once they are this fraction of it (each compaction copies
the KV cache once, so compacting on every finished row would cost more than it saves)."""


def chat_prompt(user: str, *, system: str | None = None) -> Prompt:
    """A single-turn chat prompt with an optional system message."""
    msgs = ((("system", system),) if system else ()) + (("user", user),)
    return Prompt(messages=msgs)


def _render(prompt: Prompt, tokenizer: Any, prefill: str | None) -> str:
    if prompt.messages is None:
        assert prompt.text is not None
        return prompt.text + (prefill or "")
    msgs = [{"role": r, "content": c} for r, c in prompt.messages]
    if msgs[-1]["role"] == "assistant":  # continue a partial assistant turn
        text = tokenizer.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
        return str(text) + msgs[-1]["content"] + (prefill or "")
    text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return str(text) + (prefill or "")


def _check(max_new_tokens: int, temperature: float, top_p: float, batch_size: BatchSize) -> None:
    if max_new_tokens < 1:
        raise AuditlensError("max_new_tokens must be >= 1")
    if temperature < 0:
        raise AuditlensError("temperature must be >= 0")
    if not 0 < top_p <= 1:
        raise AuditlensError("top_p must be in (0, 1]")
    if batch_size != "auto" and (not isinstance(batch_size, int) or batch_size < 1):
        raise AuditlensError(f"batch_size must be a positive int or 'auto', got {batch_size!r}")


def generate(
    side: ModelSide,
    tokenizer: Any,
    prompts: PromptSet | Sequence[Any] | str,
    *,
    max_new_tokens: int = 60,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: BatchSize = 8,
    prefill: str | None = None,
    engine: Engine = "fast",
    sort_by_length: bool | None = None,
    retire_finished: bool | None = None,
    token_budget: int | None = None,
    on_batch: Callable[[list[int], list[str]], None] | None = None,
) -> list[str]:
    """Generate a completion per prompt, in input order; ``temperature=0`` is greedy.

    Prompts are chat-templated with a generation prompt; ``prefill`` starts the answer.
    ``batch_size`` is the most rows per batch, or ``"auto"`` (free memory on CUDA, a token
    budget on the CPU: :func:`auditlens.execution.auto_batch_size`; ``token_budget`` overrides
    the CPU budget). ``sort_by_length`` and ``retire_finished`` default to on for ``"auto"``
    and off for an integer (transformers' batch shapes). ``on_batch(indices, texts)`` is
    called as each batch finishes (e.g. to hand texts to a judge while the next batch runs).
    The same seed gives the same samples, whatever the batching.
    """
    _check(max_new_tokens, temperature, top_p, batch_size)
    prompt_set = load_prompts(prompts)
    texts = [_render(p, tokenizer, prefill) for p in prompt_set.prompts]
    if engine == "hf":
        if batch_size == "auto":
            raise AuditlensError("the hf engine needs an integer batch_size")
        out = _generate_hf(side, tokenizer, texts, max_new_tokens, temperature, top_p, seed,
                           batch_size)  # fmt: skip
        if on_batch is not None:
            on_batch(list(range(len(out))), out)
        return out
    if engine != "fast":
        raise AuditlensError(f"unknown engine {engine!r}; choose fast or hf")
    rows = [_Row(i, i, None, ids) for i, ids in enumerate(_encode(tokenizer, texts))]
    settings = _Settings.make(max_new_tokens, temperature, top_p, seed, batch_size,
                              sort_by_length, retire_finished, token_budget)  # fmt: skip
    callback = None
    if on_batch is not None:
        user = on_batch

        def callback(batch: list[_Row], decoded: list[str]) -> None:
            user([r.key for r in batch], decoded)

    with side.active(), _no_grad():
        return _run(side.hf, tokenizer, rows, settings, None, callback)


def generate_pair(
    pair: ModelPair,
    prompts: PromptSet | Sequence[Any] | str,
    *,
    max_new_tokens: int = 60,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: BatchSize = "auto",
    prefill: str | None = None,
    sort_by_length: bool | None = None,
    retire_finished: bool | None = None,
    token_budget: int | None = None,
    mixed: bool = True,
    on_batch: Callable[[str, list[int], list[str]], None] | None = None,
) -> dict[str, list[str]]:
    """Both sides' completions of the same prompts: ``{"base": [...], "finetuned": [...]}``.

    A base-vs-base pair generates once and reuses the texts. An adapter pair (one model, LoRA
    switched per side) runs both sides' rows in the same batches with the adapter applied per
    row (``mixed``; the same arithmetic per row as switching it for the whole batch). Other
    pairs generate each side in turn. Options as in :func:`generate`; ``on_batch(side,
    indices, texts)`` is called as each batch finishes.
    """
    _check(max_new_tokens, temperature, top_p, batch_size)
    prompt_set = load_prompts(prompts)
    tokenizer = pair.tokenizer
    texts = [_render(p, tokenizer, prefill) for p in prompt_set.prompts]
    settings = _Settings.make(max_new_tokens, temperature, top_p, seed, batch_size,
                              sort_by_length, retire_finished, token_budget)  # fmt: skip
    encoded = _encode(tokenizer, texts)
    out: dict[str, list[str]] = {}

    def callback_for(side_name: str | None) -> Callable[[list[_Row], list[str]], None] | None:
        if on_batch is None:
            return None
        user = on_batch

        def callback(batch: list[_Row], decoded: list[str]) -> None:
            groups: dict[str, tuple[list[int], list[str]]] = {}
            for row, text in zip(batch, decoded, strict=True):
                name = side_name or ("finetuned" if row.adapter else "base")
                groups.setdefault(name, ([], []))
                groups[name][0].append(row.key)
                groups[name][1].append(text)
            for name, (keys, decoded_texts) in groups.items():
                user(name, keys, decoded_texts)

        return callback

    if pair.identical:
        rows = [_Row(i, i, None, ids) for i, ids in enumerate(encoded)]
        with pair.base.active(), _no_grad():
            base = _run(pair.base.hf, tokenizer, rows, settings, None, callback_for("base"))
        if on_batch is not None:
            on_batch("finetuned", list(range(len(base))), list(base))
        return {"base": base, "finetuned": list(base)}
    mixer = _Mixer.for_pair(pair) if mixed else None
    if mixer is not None:
        rows = []
        for i, ids in enumerate(encoded):
            rows.append(_Row(2 * i, i, None, ids))
            rows.append(_Row(2 * i + 1, i, mixer.adapter, ids))
        with pair.finetuned.active(), _no_grad(), mixer.attached():
            both = _run(pair.finetuned.hf, tokenizer, rows, settings, mixer, callback_for(None))
        return {"base": both[0::2], "finetuned": both[1::2]}
    for side in pair.sides:
        rows = [_Row(i, i, None, ids) for i, ids in enumerate(encoded)]
        with side.active(), _no_grad():
            out[side.name] = _run(side.hf, tokenizer, rows, settings, None, callback_for(side.name))
    return out


# --------------------------------------------------------------------------------------------
# Planning


@dataclass(frozen=True)
class _Row:
    """One generation: its slot in the output, its prompt index (for seeds), its adapter."""

    key: int
    prompt: int
    adapter: str | None
    ids: list[int]


@dataclass(frozen=True)
class _Settings:
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int
    batch_size: BatchSize
    sort_by_length: bool
    retire_finished: bool
    token_budget: int | None

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
    ) -> _Settings:
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


def _encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    enc = tokenizer(texts, add_special_tokens=False)
    return [list(ids) for ids in enc["input_ids"]]


def _row_seed(seed: int, prompt: int) -> int:
    digest = hashlib.sha256(f"auditlens-generate:{seed}:{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


# --------------------------------------------------------------------------------------------
# The decode loop


@contextmanager
def _no_grad() -> Iterator[None]:
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


def _takes_logits_to_keep(model: Any) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def _run(
    model: Any,
    tokenizer: Any,
    rows: list[_Row],
    settings: _Settings,
    mixer: _Mixer | None,
    callback: Callable[[list[_Row], list[str]], None] | None,
) -> list[str]:
    """Generate every row; returns texts indexed by ``row.key`` (0..n-1)."""
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
    decoder = _Decoder(model, _eos_ids(model, tokenizer), int(pad_id), settings, mixer)
    for batch_idx in plan_batches(lengths, rows_for, sort_by_length=settings.sort_by_length):
        batch = [rows[i] for i in batch_idx]
        tokens = decoder.run(batch)
        decoded = [tokenizer.decode(t, skip_special_tokens=True) for t in tokens]
        for row, text in zip(batch, decoded, strict=True):
            out[row.key] = text
        if callback is not None:
            callback(batch, decoded)
    return out


class _Decoder:
    """Greedy or sampled decoding of one left-padded batch with a preallocated KV cache."""

    def __init__(
        self,
        model: Any,
        eos: set[int],
        pad_id: int,
        settings: _Settings,
        mixer: _Mixer | None,
    ) -> None:
        self.model = model
        self.eos = eos
        self.pad_id = pad_id
        self.settings = settings
        self.mixer = mixer
        self.device = next(model.parameters()).device
        self.logits_kwargs = {"logits_to_keep": 1} if _takes_logits_to_keep(model) else {}

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

    def run(self, batch: list[_Row]) -> list[list[int]]:
        s = self.settings
        width = max(len(r.ids) for r in batch)
        n = len(batch)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((n, width), dtype=torch.long)
        for j, row in enumerate(batch):
            ids[j, width - len(row.ids) :] = torch.tensor(row.ids, dtype=torch.long)
            attn[j, width - len(row.ids) :] = 1
        ids, attn = ids.to(self.device), attn.to(self.device)
        pos = (attn.cumsum(-1) - 1).masked_fill(attn == 0, 0)
        cache = _make_cache(self.model, width + s.max_new_tokens)
        pick = self._picker(batch)
        alive = list(range(n))  # batch rows still in the tensors, in tensor order
        done = [False] * n
        tokens: list[list[int]] = [[] for _ in range(n)]
        if self.mixer is not None:
            self.mixer.set_rows([batch[j].adapter for j in alive])
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
            if s.retire_finished and n_done and n_done >= RETIRE_FRACTION * len(alive):
                keep = [k for k, j in enumerate(alive) if not done[j]]
                index = torch.tensor(keep, device=self.device)
                cache_select(cache, index)
                attn, pos, nxt = attn[index], pos[index], nxt[index]
                alive = [alive[k] for k in keep]
                if self.mixer is not None:
                    self.mixer.set_rows([batch[j].adapter for j in alive])
            attn = torch.cat([attn, attn.new_ones((attn.shape[0], 1))], dim=-1)
            pos = pos[:, -1:] + 1
            logits = self._forward(nxt[:, None], attn, pos, cache)
        return tokens

    def _picker(self, batch: list[_Row]) -> Callable[[Tensor, list[int]], Tensor]:
        s = self.settings
        if s.temperature == 0:
            return lambda logits, alive: logits.argmax(dim=-1)
        gen_device = self.device if self.device.type == "cuda" else torch.device("cpu")
        gens = [
            torch.Generator(device=gen_device).manual_seed(_row_seed(s.seed, r.prompt))
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


# --------------------------------------------------------------------------------------------
# The KV cache


def _make_cache(model: Any, capacity: int) -> Any:
    """A DynamicCache whose full-attention layers write into buffers of ``capacity`` tokens."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    try:
        cache = DynamicCache(config=model.config)
    except (AttributeError, KeyError, TypeError, ValueError):
        return DynamicCache()
    if cache.layers and all(type(layer) is DynamicLayer for layer in cache.layers):
        cache.layers = [_new_buffer_layer(capacity) for _ in cache.layers]
    return cache


def cache_select(cache: Any, index: Tensor) -> None:
    """Keep only the batch rows ``index`` of every layer of ``cache``."""
    for layer in cache.layers:
        layer.batch_select_indices(index)


def _buffer_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class BufferLayer(DynamicLayer):
        """A DynamicLayer that appends into a preallocated buffer and returns views of it.

        The keys and values handed to attention are the same numbers in the same layout as
        DynamicLayer's concatenated tensors (views of the first ``length`` positions), so
        attention computes the same result without copying the cache every token.
        """

        def __init__(self, capacity: int) -> None:
            super().__init__()
            self.capacity = capacity
            self.length = 0
            self._k: Tensor | None = None
            self._v: Tensor | None = None

        def lazy_initialization(self, key_states: Tensor, value_states: Tensor) -> None:
            self.dtype, self.device = key_states.dtype, key_states.device
            b, h, _, d = key_states.shape
            cap = max(self.capacity, key_states.shape[-2])
            self._k = key_states.new_empty((b, h, cap, d))
            self._v = value_states.new_empty((b, value_states.shape[1], cap, value_states.shape[3]))
            self.length = 0
            self.is_initialized = True

        def _grow(self, needed: int) -> None:
            assert self._k is not None and self._v is not None
            cap = max(needed, 2 * self._k.shape[2])
            for name in ("_k", "_v"):
                old = getattr(self, name)
                new = old.new_empty((*old.shape[:2], cap, old.shape[3]))
                new[:, :, : self.length] = old[:, :, : self.length]
                setattr(self, name, new)

        def update(
            self, key_states: Tensor, value_states: Tensor, *args: Any, **kwargs: Any
        ) -> tuple[Tensor, Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            assert self._k is not None and self._v is not None
            end = self.length + key_states.shape[-2]
            if end > self._k.shape[2]:
                self._grow(end)
            self._k[:, :, self.length : end] = key_states
            self._v[:, :, self.length : end] = value_states
            self.length = end
            self.keys = self._k[:, :, :end]
            self.values = self._v[:, :, :end]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length if self.is_initialized else 0

        def batch_select_indices(self, indices: Tensor) -> None:
            if not self.is_initialized or self._k is None or self._v is None:
                return
            for name in ("_k", "_v"):
                old = getattr(self, name)
                new = old.new_empty((indices.shape[0], *old.shape[1:]))
                new[:, :, : self.length] = old[:, :, : self.length].index_select(0, indices)
                setattr(self, name, new)
            assert self._k is not None and self._v is not None
            self.keys = self._k[:, :, : self.length]
            self.values = self._v[:, :, : self.length]

        def crop(self, tokens_to_remove: int) -> None:
            super().crop(tokens_to_remove)
            if self.is_initialized and self.keys is not None:
                self.length = self.keys.shape[-2]

        def reset(self) -> None:
            self.length = 0
            self._k = self._v = None
            super().reset()

    return BufferLayer


_BUFFER_LAYER: list[type] = []


def _new_buffer_layer(capacity: int) -> Any:
    if not _BUFFER_LAYER:
        _BUFFER_LAYER.append(_buffer_layer_class())
    return _BUFFER_LAYER[0](capacity)


# --------------------------------------------------------------------------------------------
# Mixed batches: the adapter on for some rows, off for others


class _Mixer:
    """Per-row LoRA selection for an adapter pair, through PEFT's mixed-batch forward."""

    def __init__(self, layers: list[Any], adapter: str) -> None:
        self.layers = layers
        self.adapter = adapter
        self.names: list[str] = []

    @classmethod
    def for_pair(cls, pair: ModelPair) -> _Mixer | None:
        base, ft = pair.base, pair.finetuned
        if base.module is not ft.module or base.adapter_enabled is not False:
            return None
        if not ft.adapter_enabled:
            return None
        try:
            from peft.tuners.lora import LoraLayer
        except ImportError:  # pragma: no cover - peft is a dependency
            return None
        layers = [m for m in ft.module.modules() if isinstance(m, LoraLayer)]
        if not layers:
            return None
        for layer in layers:
            if getattr(layer, "merged", False) or any(getattr(layer, "use_dora", {}).values()):
                return None
        adapter = getattr(ft.module, "active_adapter", None)
        if not isinstance(adapter, str):
            return None
        return cls(layers, adapter)

    def set_rows(self, adapters: list[str | None]) -> None:
        self.names = ["__base__" if a is None else a for a in adapters]

    @contextmanager
    def attached(self) -> Iterator[None]:
        def hook(
            module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[tuple[Any, ...], dict[str, Any]]:
            return args, {**kwargs, "adapter_names": self.names}

        handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in self.layers]
        try:
            yield
        finally:
            for h in handles:
                h.remove()


# --------------------------------------------------------------------------------------------
# The reference engine


def _generate_hf(
    side: ModelSide,
    tokenizer: Any,
    texts: list[str],
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    batch_size: int,
) -> list[str]:
    """transformers' ``generate`` on consecutive batches (the engine before the fast one)."""
    model = side.hf
    device = next(model.parameters()).device
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    outputs: list[str] = []
    gen = torch.Generator(device="cpu").manual_seed(seed)
    try:
        for lo in range(0, len(texts), batch_size):
            chunk = texts[lo : lo + batch_size]
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(device) for k, v in enc.items()}
            kwargs: dict[str, Any] = {
                "max_new_tokens": max_new_tokens,
                "pad_token_id": tokenizer.pad_token_id,
                "do_sample": temperature > 0,
            }
            if temperature > 0:
                kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            with side.active(), torch.no_grad():
                out = model.generate(**enc, **kwargs)
            new = out[:, enc["input_ids"].shape[1] :]
            outputs.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = old_side
    return outputs
