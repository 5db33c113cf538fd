"""Prompt sets: chat JSONL, plain-text JSONL or Python lists, tokenized with token masks.

A chat item is rendered with the tokenizer's chat template. A token mask chooses which
positions count: every non-pad token, assistant tokens only, or the last k prompt tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from auditlens.errors import DatasetError
from auditlens.hashing import sha256_json

__all__ = [
    "BUILTIN_PROMPT_SETS",
    "MaskSpec",
    "Prompt",
    "PromptSet",
    "TokenBatch",
    "iter_token_batches",
    "jsonl_objects",
    "load_prompts",
    "shared_prefix_length",
    "tokenize_prompts",
]

BUILTIN_PROMPT_SETS = ("generic_chat", "code_tasks")
MaskKind = Literal["all", "assistant", "last_k", "content"]
_ROLES = {"system", "user", "assistant"}


@dataclass(frozen=True)
class Prompt:
    """One item: chat ``messages`` (rendered with the chat template) or raw ``text``."""

    messages: tuple[tuple[str, str], ...] | None = None
    text: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.messages is not None:
            return {"messages": [{"role": r, "content": c} for r, c in self.messages]}
        return {"text": self.text}


@dataclass(frozen=True)
class PromptSet:
    """An ordered, hashable list of prompts with a name."""

    name: str
    prompts: tuple[Prompt, ...]

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def sha256(self) -> str:
        return sha256_json([p.to_json() for p in self.prompts])

    def head(self, n: int) -> PromptSet:
        """The first ``n`` prompts."""
        return PromptSet(f"{self.name}[:{n}]", self.prompts[:n])


@dataclass(frozen=True)
class MaskSpec:
    """Which token positions count: ``all`` non-pad, ``assistant`` content, ``last_k``, or
    ``content``: message contents only (never chat-template tokens), never position 0 (the
    attention sink) and never the token prefix that every prompt of the set shares."""

    kind: MaskKind = "all"
    k: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("all", "assistant", "last_k", "content"):
            raise DatasetError(
                f"unknown mask {self.kind!r}; choose all, assistant, last_k or content"
            )
        if self.k < 1:
            raise DatasetError(f"last_k needs k >= 1, got {self.k}")

    def describe(self) -> str:
        return f"last_{self.k}" if self.kind == "last_k" else self.kind


def _parse_item(item: Any, where: str) -> Prompt:
    if isinstance(item, str):
        if not item.strip():
            raise DatasetError(f"{where}: empty prompt")
        return Prompt(messages=(("user", item),))
    if not isinstance(item, dict):
        raise DatasetError(f"{where}: expected an object with 'messages' or 'text'")
    if "messages" in item:
        msgs = item["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise DatasetError(f"{where}: 'messages' must be a non-empty list")
        parsed = []
        for m in msgs:
            if not isinstance(m, dict) or m.get("role") not in _ROLES:
                raise DatasetError(f"{where}: each message needs a role in {sorted(_ROLES)}")
            if not isinstance(m.get("content"), str):
                raise DatasetError(f"{where}: each message needs string 'content'")
            parsed.append((m["role"], m["content"]))
        return Prompt(messages=tuple(parsed))
    if isinstance(item.get("text"), str) and item["text"].strip():
        return Prompt(text=item["text"])
    raise DatasetError(f"{where}: expected 'messages' (chat) or non-empty 'text'")


def load_prompts(
    source: str | Path | Sequence[Any] | PromptSet, name: str | None = None
) -> PromptSet:
    """Load prompts from a JSONL file, a built-in set name, or a list of strings/dicts."""
    if isinstance(source, PromptSet):
        return source
    if isinstance(source, (str, Path)) and str(source) in BUILTIN_PROMPT_SETS:
        ref = resources.files("auditlens.data").joinpath(f"{source}.jsonl")
        return _load_jsonl_text(ref.read_text(encoding="utf-8"), str(source), name or str(source))
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DatasetError(
                f"prompt file {path} not found (built-in sets: {', '.join(BUILTIN_PROMPT_SETS)})"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise DatasetError(f"{path}: not UTF-8 text") from err
        return _load_jsonl_text(text, str(path), name or path.stem)
    items = [_parse_item(item, f"item {i}") for i, item in enumerate(source)]
    if not items:
        raise DatasetError("the prompt list is empty")
    return PromptSet(name or "prompts", tuple(items))


def jsonl_objects(text: str, where: str) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, parsed object)`` for each non-blank JSONL line.

    A line that does not parse raises :class:`DatasetError` naming ``where`` and the line.
    """
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            msg = f"{where}:{lineno}: malformed JSON (invalid JSON: {err.msg})"
            raise DatasetError(msg) from err
        yield lineno, obj


def _load_jsonl_text(text: str, where: str, name: str) -> PromptSet:
    items = [_parse_item(obj, f"{where}:{n}") for n, obj in jsonl_objects(text, where)]
    if not items:
        raise DatasetError(f"{where}: no prompts (the file is empty)")
    return PromptSet(name, tuple(items))


@dataclass
class TokenBatch:
    """A right-padded batch with its token mask and the indices of its prompts."""

    input_ids: Int[Tensor, "batch seq"]
    attention_mask: Int[Tensor, "batch seq"]
    token_mask: Bool[Tensor, "batch seq"]
    prompt_index: Int[Tensor, " batch"]


@dataclass
class _Encoded:
    ids: list[int]
    assistant: list[bool]
    prompt_len: int  # tokens before the final assistant reply (or all tokens if none)
    content: list[bool] = field(default_factory=list)  # inside a message's content
    truncated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _render(
    prompt: Prompt, tokenizer: Any
) -> tuple[str, list[tuple[int, int]], int, list[tuple[int, int]]]:
    """Text to tokenize, the char spans of assistant contents, where the prompt ends, and the
    char spans of every message's content (the rest is chat template)."""
    if prompt.messages is None:
        assert prompt.text is not None
        return prompt.text, [], len(prompt.text), [(0, len(prompt.text))]
    msgs = [{"role": r, "content": c} for r, c in prompt.messages]
    ends_with_user = msgs[-1]["role"] != "assistant"
    if getattr(tokenizer, "chat_template", None) is None:
        raise DatasetError("the tokenizer has no chat template; use {'text': ...} items")
    text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=ends_with_user)
    spans: list[tuple[int, int]] = []
    contents: list[tuple[int, int]] = []
    cursor = 0
    for m in msgs:
        start = text.find(m["content"], cursor) if m["content"] else -1
        if start < 0:
            continue
        end = start + len(m["content"])
        contents.append((start, end))
        if m["role"] == "assistant":
            spans.append((start, end))
        cursor = end
    prompt_end = spans[-1][0] if (spans and not ends_with_user) else len(text)
    return text, spans, prompt_end, contents


def _encode(prompt: Prompt, tokenizer: Any, max_length: int) -> _Encoded:
    text, spans, prompt_end, contents = _render(prompt, tokenizer)
    enc = tokenizer(
        text,
        add_special_tokens=prompt.messages is None,
        return_offsets_mapping=True,
    )
    ids: list[int] = list(enc["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]
    assistant = [any(s <= a < e for s, e in spans) for a, _ in offsets]
    content = [any(s <= a < e for s, e in contents) and b > a for a, b in offsets]
    prompt_len = sum(1 for a, _ in offsets if a < prompt_end)
    truncated = len(ids) > max_length
    if truncated:
        ids, assistant, content = ids[:max_length], assistant[:max_length], content[:max_length]
        prompt_len = min(prompt_len, max_length)
    if not ids:
        raise DatasetError("a prompt tokenized to zero tokens")
    return _Encoded(ids, assistant, prompt_len, content, truncated)


def tokenize_prompts(
    prompts: PromptSet, tokenizer: Any, *, max_length: int = 512
) -> list[tuple[list[int], list[bool], int]]:
    """Token ids, assistant flags and prompt length per prompt (chat template applied)."""
    return [
        (e.ids, e.assistant, e.prompt_len)
        for e in (_encode(p, tokenizer, max_length) for p in prompts.prompts)
    ]


def shared_prefix_length(prompts: PromptSet, tokenizer: Any, *, max_length: int = 512) -> int:
    """Tokens at the start that every prompt of the set shares (template, system prompt).

    A set of one prompt shares nothing by this rule (0)."""
    if len(prompts) < 2:
        return 0
    ids = [_encode(p, tokenizer, max_length).ids for p in prompts.prompts]
    n = 0
    for column in zip(*ids, strict=False):
        if any(t != column[0] for t in column):
            break
        n += 1
    return n


def _token_mask(enc: _Encoded, mask: MaskSpec, skip: int = 0) -> list[bool]:
    n = len(enc.ids)
    if mask.kind == "all":
        return [True] * n
    if mask.kind == "assistant":
        return enc.assistant
    if mask.kind == "content":
        first = max(1, skip)  # position 0 is the attention sink
        return [c and i >= first for i, c in enumerate(enc.content)]
    start = max(0, enc.prompt_len - mask.k)
    return [start <= i < enc.prompt_len for i in range(n)]


def iter_token_batches(
    prompts: PromptSet,
    tokenizer: Any,
    *,
    batch_size: int = 8,
    mask: MaskSpec | None = None,
    max_length: int = 512,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[TokenBatch]:
    """Right-padded batches over prompts ``[start, stop)``, tokenized lazily (bounded memory)."""
    mask = mask or MaskSpec()
    if batch_size < 1:
        raise DatasetError(f"batch_size must be >= 1, got {batch_size}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    stop = len(prompts) if stop is None else min(stop, len(prompts))
    skip = 0
    if mask.kind == "content":
        skip = shared_prefix_length(prompts, tokenizer, max_length=max_length)
    for lo in range(start, stop, batch_size):
        idx = list(range(lo, min(lo + batch_size, stop)))
        encoded = [_encode(prompts.prompts[i], tokenizer, max_length) for i in idx]
        width = max(len(e.ids) for e in encoded)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        attn = torch.zeros((len(idx), width), dtype=torch.long)
        tmask = torch.zeros((len(idx), width), dtype=torch.bool)
        for row, e in enumerate(encoded):
            n = len(e.ids)
            ids[row, :n] = torch.tensor(e.ids)
            attn[row, :n] = 1
            tmask[row, :n] = torch.tensor(_token_mask(e, mask, skip))
        yield TokenBatch(ids, attn, tmask, torch.tensor(idx, dtype=torch.long))
