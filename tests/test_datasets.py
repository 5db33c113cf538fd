"""Prompt sets: formats, chat templates, masks and malformed input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from auditlens.datasets import MaskSpec, iter_token_batches, load_prompts
from auditlens.errors import DatasetError


def test_formats_load(tmp_path: Path) -> None:
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n\n")
    text = tmp_path / "text.jsonl"
    text.write_text(json.dumps({"text": "plain words"}) + "\n")
    assert load_prompts(chat).prompts[0].messages == (("user", "hi"),)
    assert load_prompts(text).prompts[0].text == "plain words"
    assert load_prompts(["a", {"text": "b"}]).prompts[1].text == "b"
    assert len(load_prompts("generic_chat")) >= 32 and len(load_prompts("code_tasks")) >= 16
    assert load_prompts(["a"]).sha256 != load_prompts(["b"]).sha256


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("{bad json\n", r"bad\.jsonl:1: malformed JSON"),
        ('{"messages": []}\n', "non-empty list"),
        ('{"messages": [{"role": "robot", "content": "x"}]}\n', "role"),
        ('{"other": 1}\n', "expected 'messages'"),
    ],
)
def test_malformed_files_are_one_line_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message) as info:
        load_prompts(path)
    assert "\n" not in str(info.value)


def test_missing_and_empty_sources() -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_prompts("no/such/file.jsonl")
    with pytest.raises(DatasetError, match="empty"):
        load_prompts([])


def test_masks_on_chat(tiny_tokenizer: Any) -> None:
    item = {"messages": [{"role": "user", "content": "hello"},
                         {"role": "assistant", "content": "world again"}]}  # fmt: skip
    prompts = load_prompts([item])
    (full,) = iter_token_batches(prompts, tiny_tokenizer, mask=MaskSpec("all"))
    (asst,) = iter_token_batches(prompts, tiny_tokenizer, mask=MaskSpec("assistant"))
    ids = full.input_ids[0]
    assert int(full.token_mask.sum()) == ids.numel()
    assert tiny_tokenizer.decode(ids[asst.token_mask[0]].tolist()) == "world again"
    (last,) = iter_token_batches(prompts, tiny_tokenizer, mask=MaskSpec("last_k", 2))
    # last_k counts the prompt tokens before the assistant reply begins
    rendered = tiny_tokenizer.decode(ids[last.token_mask[0]].tolist())
    assert "<|im_start|>assistant\n".endswith(rendered) and int(last.token_mask.sum()) == 2
    with pytest.raises(DatasetError):
        MaskSpec("weird")  # type: ignore[arg-type]


def test_batches_right_pad_and_keep_order(tiny_tokenizer: Any) -> None:
    prompts = load_prompts(["a", "a much longer prompt with many words", "b"])
    batches = list(iter_token_batches(prompts, tiny_tokenizer, batch_size=2))
    assert [b.prompt_index.tolist() for b in batches] == [[0, 1], [2]]
    first = batches[0]
    assert first.attention_mask[0, -1] == 0 and first.attention_mask[1].all()
    assert not first.token_mask[0][first.attention_mask[0] == 0].any()
