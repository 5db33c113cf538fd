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

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import torch

from auditlens.datasets import Prompt, PromptSet, load_prompts
from auditlens.decode import (
    BatchSize,
    Row,
    RowCallback,
    RowListener,
    Settings,
    encode,
    no_grad,
    plan_batches,
    run_rows,
)
from auditlens.errors import AuditlensError
from auditlens.row_state import Mixer, RowSteerer

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
    settings = Settings.make(
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
    settings = Settings.make(
        max_new_tokens, temperature, top_p, seed, batch_size, sort_by_length, retire_finished,
        token_budget, share_prefix,
    )  # fmt: skip
    if share_prefix and any(x is not None and x.tokens != "all" for x in steers):
        raise AuditlensError(
            "share_prefix moves the prompt boundary that tokens='prompt'/'generated' steering "
            "needs; steer all tokens or leave share_prefix off"
        )
    return _generate_variants(target, tokenizer, texts, list(steers), settings, mixed, on_batch)


def _generate_variants(
    target: ModelSide | ModelPair,
    tokenizer: Any,
    texts: list[str],
    steers: list[Steer | None],
    settings: Settings,
    mixed: bool,
    on_batch: RowCallback | None,
) -> dict[str, list[list[str]]]:
    from auditlens.models import ModelPair
    from auditlens.sites import arch_spec

    encoded = encode(tokenizer, texts)
    n, n_var = len(encoded), len(steers)

    def rows_of(side_name: str, adapter: str | None) -> list[Row]:
        return [
            Row(side_name, v, i, adapter, ids)
            for v in range(n_var)
            for i, ids in enumerate(encoded)
        ]

    jobs: list[tuple[ModelSide, list[Row], Mixer | None]] = []
    shared: dict[str, str] = {}
    if isinstance(target, ModelPair):
        arch = target.arch
        mixer = Mixer.for_pair(target) if mixed and not target.identical else None
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
        listeners: list[RowListener] = [mixer] if mixer is not None else []
        steerer = RowSteerer.make(side.hf, arch, steers)
        if steerer is not None:
            listeners.append(steerer)
        with side.active(), no_grad(), _attached(mixer), _attached(steerer):
            decoded = run_rows(side.hf, tokenizer, rows, settings, listeners, on_batch)
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
def _attached(listener: RowListener | None) -> Iterator[None]:
    if listener is None:
        yield
        return
    with listener.attached():
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
