"""Batched text generation from one side of a pair, both sides, or under steering variants.

Two engines give the same greedy text:

- ``fast`` (the default): our own decode loop. The KV cache is preallocated for
  ``prompt + max_new_tokens`` (no ``torch.cat`` of the whole cache per token), rows that hit
  EOS can leave the batch (``retire_finished``), prompts can be sorted by length into batches
  (``sort_by_length``; results come back in input order), ``batch_size="auto"`` sizes batches
  by free device memory or a CPU token budget (:mod:`auditlens.execution`), and
  ``share_prefix`` runs the prompt prefix all rows share once per batch.
  :func:`generate_pair` puts the base and fine-tuned rows of an adapter pair into the *same*
  batches (per-row LoRA on/off), so each weight is read once per step for both sides;
  :func:`generate_variants` adds steering variants (a per-row vector) to the same batches.
- ``hf``: transformers' ``generate`` on batches of ``batch_size`` in input order: the
  reference the fast engine is tested against.

Greedy text does not depend on how rows are batched: on the CPU, fp32 kernels give each row
the same tokens whatever its batch neighbours and padding. Checked on the embedded model with
the shipped adapter: transformers' generate at batch 1, 8 and 40 gives the same 40 x 96-token
texts, and the fast engine's mixed, sorted, retired and prefix-shared batches give the same
texts as batches of 8 (docs/benchmarks.md, "Generation"); tests/test_generate.py checks every
option on tiny models. With an integer ``batch_size`` the fast engine keeps transformers'
batch shapes by default (input order, no retirement), so even hooks that draw random noise
per forward call (activation noise) see exactly the calls they saw before.
``batch_size="auto"`` switches sorting and retirement on; pass them explicitly to choose.

Sampling (``temperature > 0``) draws each row from its own generator seeded by ``(seed,
prompt index)``, so samples are reproducible and do not depend on batching either; both sides
and all steering variants of a prompt share its random numbers (common random numbers for
paired tests).
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch
from torch import Tensor

from auditlens.datasets import Prompt, PromptSet, load_prompts
from auditlens.errors import AuditlensError
from auditlens.execution import auto_batch_size

if TYPE_CHECKING:
    from auditlens.models import ModelPair, ModelSide
    from auditlens.steering import Steer

__all__ = [
    "BatchSize",
    "Engine",
    "chat_prompt",
    "generate",
    "generate_pair",
    "generate_variants",
    "plan_batches",
]

Engine = Literal["fast", "hf"]
BatchSize = int | Literal["auto"]
MIN_SHARED_PREFIX = 8
"""Shortest common prompt prefix worth computing once per batch (``share_prefix``)."""
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
    share_prefix: bool = False,
    on_batch: Callable[[list[int], list[str]], None] | None = None,
) -> list[str]:
    """Generate a completion per prompt, in input order; ``temperature=0`` is greedy.

    Prompts are chat-templated with a generation prompt; ``prefill`` starts the answer.
    ``batch_size`` is the most rows per batch, or ``"auto"`` (free memory on CUDA, a token
    budget on the CPU: :func:`auditlens.execution.auto_batch_size`; ``token_budget`` overrides
    the CPU budget). ``sort_by_length`` and ``retire_finished`` default to on for ``"auto"``
    and off for an integer (transformers' batch shapes). ``on_batch(indices, texts)`` is
    called as each batch finishes (e.g. to hand texts to a judge while the next batch runs).
    The same seed gives the same samples, whatever the batching. ``share_prefix`` computes
    the prompt tokens every row of a batch starts with (the chat template's system prompt)
    once per batch instead of once per row; it changes the shapes of the forward calls and
    the prompt boundary that position-dependent hooks see (``tokens="prompt"/"generated"``
    steering), so use it only without such hooks.
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
    settings = _Settings.make(
        max_new_tokens, temperature, top_p, seed, batch_size, sort_by_length, retire_finished,
        token_budget, share_prefix,
    )  # fmt: skip
    callback = None
    if on_batch is not None:
        user = on_batch

        def callback(side_name: str, variant: int, indices: list[int], out: list[str]) -> None:
            user(indices, out)

    result = _generate_variants(side, tokenizer, texts, [None], settings, False, callback)
    return result[side.name][0]


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
    share_prefix: bool = False,
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
    callback = None
    if on_batch is not None:
        user = on_batch

        def callback(side_name: str, variant: int, indices: list[int], out: list[str]) -> None:
            user(side_name, indices, out)

    result = generate_variants(
        pair, prompts, [None], max_new_tokens=max_new_tokens, temperature=temperature,
        top_p=top_p, seed=seed, batch_size=batch_size, prefill=prefill,
        sort_by_length=sort_by_length, retire_finished=retire_finished,
        token_budget=token_budget, share_prefix=share_prefix, mixed=mixed, on_batch=callback,
    )  # fmt: skip
    return {name: variants[0] for name, variants in result.items()}


def generate_variants(
    target: ModelSide | ModelPair,
    prompts: PromptSet | Sequence[Any] | str,
    steers: Sequence[Steer | None],
    *,
    tokenizer: Any = None,
    max_new_tokens: int = 60,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: BatchSize = "auto",
    prefill: str | None = None,
    sort_by_length: bool | None = None,
    retire_finished: bool | None = None,
    token_budget: int | None = None,
    share_prefix: bool = False,
    mixed: bool = True,
    on_batch: Callable[[str, int, list[int], list[str]], None] | None = None,
) -> dict[str, list[list[str]]]:
    """Completions of every prompt under each steering variant, in shared batches.

    ``steers[k]`` is an ``add``/``subtract`` :class:`~auditlens.steering.Steer` or None (no
    edit). Rows of every variant (and, for a pair, of both sides) share batches; a hook adds
    each row's own vector, so row ``(k, i)`` gets exactly what ``with steer(side, arch,
    steers[k]): generate(side, ...)`` gives prompt ``i`` (the same arithmetic per row, and
    untouched rows for None). Returns ``{side name: [variant][prompt] texts}``: one side for a
    :class:`ModelSide` (then pass its ``tokenizer``), both for a :class:`ModelPair` (adapter
    pairs mixed per row as in :func:`generate_pair`). ``on_batch(side, variant, indices,
    texts)`` is called as each batch finishes. Sampling seeds follow the prompt index, so every
    variant and side of a prompt shares its random numbers.
    """
    _check(max_new_tokens, temperature, top_p, batch_size)
    if not steers:
        raise AuditlensError("generate_variants needs at least one variant (None: no steering)")
    from auditlens.models import ModelPair

    if isinstance(target, ModelPair):
        tokenizer = target.tokenizer
    elif tokenizer is None:
        raise AuditlensError("generate_variants on one side needs its tokenizer")
    prompt_set = load_prompts(prompts)
    texts = [_render(p, tokenizer, prefill) for p in prompt_set.prompts]
    settings = _Settings.make(
        max_new_tokens, temperature, top_p, seed, batch_size, sort_by_length, retire_finished,
        token_budget, share_prefix,
    )  # fmt: skip
    if share_prefix and any(x is not None and x.tokens != "all" for x in steers):
        raise AuditlensError(
            "share_prefix moves the prompt boundary that tokens='prompt'/'generated' steering "
            "needs; steer all tokens or leave share_prefix off"
        )
    return _generate_variants(target, tokenizer, texts, list(steers), settings, mixed, on_batch)


RowCallback = Callable[[str, int, list[int], list[str]], None]


def _generate_variants(
    target: ModelSide | ModelPair,
    tokenizer: Any,
    texts: list[str],
    steers: list[Steer | None],
    settings: _Settings,
    mixed: bool,
    on_batch: RowCallback | None,
) -> dict[str, list[list[str]]]:
    from auditlens.models import ModelPair
    from auditlens.sites import arch_spec

    encoded = _encode(tokenizer, texts)
    n, n_var = len(encoded), len(steers)

    def rows_of(side_name: str, adapter: str | None) -> list[_Row]:
        return [
            _Row(side_name, v, i, adapter, ids)
            for v in range(n_var)
            for i, ids in enumerate(encoded)
        ]

    jobs: list[tuple[ModelSide, list[_Row], _Mixer | None]] = []
    shared: dict[str, str] = {}
    if isinstance(target, ModelPair):
        arch = target.arch
        mixer = _Mixer.for_pair(target) if mixed and not target.identical else None
        if target.identical:
            jobs.append((target.base, rows_of("base", None), None))
            shared["finetuned"] = "base"
        elif mixer is not None:
            both = [
                row
                for pair_rows in zip(rows_of("base", None), rows_of("finetuned", mixer.adapter),
                                     strict=True)
                for row in pair_rows
            ]  # fmt: skip
            jobs.append((target.finetuned, both, mixer))
        else:
            jobs += [(side, rows_of(side.name, None), None) for side in target.sides]
    else:
        arch = arch_spec(target.module)
        jobs.append((target, rows_of(target.name, None), None))
    out: dict[str, list[list[str]]] = {}
    for side, rows, mixer in jobs:
        listeners: list[_RowListener] = [mixer] if mixer is not None else []
        steerer = _RowSteerer.make(side.hf, arch, steers)
        if steerer is not None:
            listeners.append(steerer)
        with side.active(), _no_grad(), _attached(mixer), _attached(steerer):
            decoded = _run(side.hf, tokenizer, rows, settings, listeners, on_batch)
        for row, text in zip(rows, decoded, strict=True):
            out.setdefault(row.side, [[""] * n for _ in range(n_var)])[row.variant][row.prompt] = (
                text
            )
    for copy_to, source in shared.items():
        out[copy_to] = [list(v) for v in out[source]]
        if on_batch is not None:
            for v, variant_texts in enumerate(out[copy_to]):
                on_batch(copy_to, v, list(range(n)), list(variant_texts))
    return out


@contextmanager
def _attached(listener: _RowListener | None) -> Iterator[None]:
    if listener is None:
        yield
        return
    with listener.attached():
        yield


# --------------------------------------------------------------------------------------------
# Planning


@dataclass(frozen=True)
class _Row:
    """One generation: its side, steering variant and prompt index (which also seeds its
    sampling), the adapter it runs with in a mixed batch, and its prompt's token ids."""

    side: str
    variant: int
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


def _common_prefix(rows: list[list[int]]) -> int:
    """Length of the token prefix all rows share, leaving each row at least one token."""
    shortest = min(len(r) for r in rows)
    n = 0
    first = rows[0]
    while n < shortest - 1 and all(r[n] == first[n] for r in rows):
        n += 1
    return n


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
    listeners: list[_RowListener],
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
    decoder = _Decoder(model, _eos_ids(model, tokenizer), int(pad_id), settings, listeners)
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


class _Decoder:
    """Greedy or sampled decoding of one left-padded batch with a preallocated KV cache."""

    def __init__(
        self,
        model: Any,
        eos: set[int],
        pad_id: int,
        settings: _Settings,
        listeners: list[_RowListener],
    ) -> None:
        self.model = model
        self.eos = eos
        self.pad_id = pad_id
        self.settings = settings
        self.listeners = listeners
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
        n = len(batch)
        prefix = _common_prefix([r.ids for r in batch]) if s.share_prefix and n > 1 else 0
        if prefix < MIN_SHARED_PREFIX:
            prefix = 0
        cache = _make_cache(self.model, max(len(r.ids) for r in batch) + s.max_new_tokens)
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

    def _prefill_prefix(self, batch: list[_Row], prefix: int, cache: Any) -> None:
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
    """A DynamicCache whose full-attention layers write into buffers of ``capacity`` tokens.

    Falls back to transformers' plain DynamicCache where its layer API differs from the one
    the buffer layer was written against (checked by signature, so another transformers
    version degrades to the slower cache instead of failing).
    """
    from transformers.cache_utils import DynamicCache, DynamicLayer

    try:
        cache = DynamicCache(config=model.config)
    except (AttributeError, KeyError, TypeError, ValueError):
        return DynamicCache()
    if (
        _buffer_layer_fits(DynamicLayer)
        and cache.layers
        and all(type(layer) is DynamicLayer for layer in cache.layers)
    ):
        cache.layers = [_new_buffer_layer(capacity) for _ in cache.layers]
    return cache


def _buffer_layer_fits(layer_class: Any) -> bool:
    try:
        init = list(inspect.signature(layer_class.lazy_initialization).parameters)
        update = list(inspect.signature(layer_class.update).parameters)
    except (AttributeError, TypeError, ValueError):
        return False
    return (
        init[:3] == ["self", "key_states", "value_states"]
        and update[:3] == ["self", "key_states", "value_states"]
        and all(hasattr(layer_class, n) for n in ("get_seq_length", "batch_select_indices"))
    )


def can_select_rows(cache: Any) -> bool:
    """Whether :func:`cache_select` works on ``cache`` (rows can leave or be copied)."""
    layers: list[Any] = list(getattr(cache, "layers", None) or [])
    return bool(layers) and all(hasattr(layer, "batch_select_indices") for layer in layers)


def cache_select(cache: Any, index: Tensor) -> None:
    """Keep (or repeat) the batch rows ``index`` of every layer of ``cache``."""
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
# Per-row state: the adapter on for some rows and off for others, a steering vector per row


class _RowListener(Protocol):
    """Told which rows the batch holds (in tensor order) before each forward pass."""

    def set_rows(self, rows: list[_Row]) -> None: ...

    def attached(self) -> AbstractContextManager[None]: ...


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

    def set_rows(self, rows: list[_Row]) -> None:
        self.names = ["__base__" if r.adapter is None else r.adapter for r in rows]

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


class _RowSteerer:
    """Adds each row's own steering vector (``add``/``subtract``) at its site.

    Row ``r`` of variant ``k`` gets ``h + (±coeff_k)·v_k`` on the positions of ``tokens_k``,
    computed exactly as :func:`auditlens.steering.steer` computes it for a whole batch;
    rows without a vector at a site are left untouched (``torch.where``, not ``+ 0``).
    """

    def __init__(self, root: Any, arch: Any, steers: list[Steer | None]) -> None:
        from auditlens.hooks import PositionTracker
        from auditlens.sites import model_dims, parse_site

        n_layers, d_model = model_dims(root)
        self.root, self.arch, self.steers = root, arch, steers
        self.tracker = PositionTracker()
        self.by_site: dict[str, tuple[Any, list[int]]] = {}
        for k, spec in enumerate(steers):
            if spec is None:
                continue
            if spec.mode not in ("add", "subtract"):
                raise AuditlensError(
                    f"per-row steering supports add and subtract, not {spec.mode!r}; "
                    "steer the whole batch with auditlens.steering.steer instead"
                )
            if spec.d_model != d_model:
                raise AuditlensError(
                    f"steering vector has width {spec.d_model} but the model's d_model is {d_model}"
                )
            site = parse_site(spec.site, n_layers)
            self.by_site.setdefault(site.name, (site, []))[1].append(k)
        self.variants = torch.zeros(0, dtype=torch.long)
        self._tables: dict[tuple[str, torch.dtype, torch.device], tuple[Tensor, Tensor]] = {}

    @classmethod
    def make(cls, root: Any, arch: Any, steers: list[Steer | None]) -> _RowSteerer | None:
        return cls(root, arch, steers) if any(s is not None for s in steers) else None

    def set_rows(self, rows: list[_Row]) -> None:
        self.variants = torch.tensor([r.variant for r in rows], dtype=torch.long)

    def _table(self, site: str, hidden: Tensor) -> tuple[Tensor, Tensor]:
        key = (site, hidden.dtype, hidden.device)
        if key not in self._tables:
            d = hidden.shape[-1]
            deltas = hidden.new_zeros((len(self.steers), d))
            has = torch.zeros(len(self.steers), dtype=torch.bool, device=hidden.device)
            for k in self.by_site[site][1]:
                spec = self.steers[k]
                assert spec is not None
                sign = 1.0 if spec.mode == "add" else -1.0
                vec = spec.vector.detach().to(hidden.dtype).to(hidden.device)
                deltas[k] = (sign * spec.coeff) * vec
                has[k] = True
            self._tables[key] = (deltas, has)
        return self._tables[key]

    def _edit(self, site: str) -> Callable[[Tensor], Tensor]:
        def edit(hidden: Tensor) -> Tensor:
            deltas, has = self._table(site, hidden)
            rows = self.variants.to(hidden.device)
            edited = hidden + deltas[rows][:, None, :]
            mask = has[rows][:, None, None].expand(hidden.shape[0], hidden.shape[1], 1)
            ranges = {self.steers[k].tokens for k in self.by_site[site][1]}  # type: ignore[union-attr]
            if ranges != {"all"}:
                per_row = torch.zeros_like(mask)
                for token_range in ranges:
                    selected = self.tracker.select(token_range, hidden)
                    chosen = torch.tensor(
                        [
                            self.steers[k] is not None and self.steers[k].tokens == token_range  # type: ignore[union-attr]
                            for k in range(len(self.steers))
                        ],
                        device=hidden.device,
                    )[rows][:, None, None]
                    rng = chosen if selected is None else chosen & selected
                    per_row = per_row | rng
                mask = mask & per_row
            return torch.where(mask, edited, hidden)

        return edit

    @contextmanager
    def attached(self) -> Iterator[None]:
        from auditlens.hooks import attach_edit, attach_tracker, hooks_removed

        with hooks_removed([]) as handles:
            handles.append(attach_tracker(self.root, self.arch, self.tracker))
            for name, (site, _) in self.by_site.items():
                handles.append(attach_edit(self.root, self.arch, site, self._edit(name)))
            yield


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
