"""Reliability: an adapter that does not apply, or whose files are missing, empty, truncated or
corrupt, is a one-line error (exit 2 in the CLI), never a silent base-vs-base audit."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from auditlens.errors import AuditlensError, PairMismatchError
from auditlens.models import load_pair
from tests.conftest import make_tiny_model


def _lora(model: torch.nn.Module, path: Path, targets: list[str], scale: float = 0.5) -> Path:
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, scale) if scale else p.zero_()
    peft_model.save_pretrained(path)
    return path


@pytest.fixture
def folders(tiny_tokenizer: Any, tmp_path: Path) -> tuple[str, Path]:
    """A tiny Llama base folder and a working LoRA adapter for it."""
    base = make_tiny_model("llama", len(tiny_tokenizer))
    base.save_pretrained(tmp_path / "base")
    tiny_tokenizer.save_pretrained(tmp_path / "base")
    adapter = _lora(make_tiny_model("llama", len(tiny_tokenizer)), tmp_path / "lora", ["q_proj"])
    return str(tmp_path / "base"), adapter


def _copy_adapter(src: Path, dst: Path, edit: Callable[[Path], None]) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    edit(dst / "adapter_model.safetensors")
    return dst


def _one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and "Repo id" not in text and "Traceback" not in text
    return text


def test_working_adapter_loads_and_differs(folders: tuple[str, Path]) -> None:
    base, adapter = folders
    pair = load_pair(base, adapter=str(adapter), device="cpu")
    assert not pair.identical and pair.finetuned.adapter_enabled


def test_adapter_whose_keys_match_nothing_is_refused(
    folders: tuple[str, Path], tmp_path: Path
) -> None:
    base, adapter = folders

    def rename(path: Path) -> None:
        tensors = load_file(path)
        save_file({k.replace("q_proj", "q_projection"): v for k, v in tensors.items()}, path)

    renamed = _copy_adapter(adapter, tmp_path / "renamed", rename)
    with pytest.raises(PairMismatchError, match="match no module") as err:
        load_pair(base, adapter=str(renamed), device="cpu")
    assert "of 6 adapter tensors" in _one_line(err.value)  # 3 layers x (A, B)


def test_adapter_with_no_effect_is_refused(
    folders: tuple[str, Path], tiny_tokenizer: Any, tmp_path: Path
) -> None:
    base, _ = folders
    zero = _lora(make_tiny_model("llama", len(tiny_tokenizer)), tmp_path / "zero", ["q_proj"], 0)
    with pytest.raises(PairMismatchError, match="has no effect") as err:
        load_pair(base, adapter=str(zero), device="cpu")
    _one_line(err.value)


def test_adapter_for_another_architecture_is_refused(
    folders: tuple[str, Path], tiny_tokenizer: Any, tmp_path: Path
) -> None:
    base, _ = folders
    gpt2 = _lora(make_tiny_model("gpt2", len(tiny_tokenizer)), tmp_path / "gpt2", ["c_attn"])
    with pytest.raises(PairMismatchError, match="does not fit the base model") as err:
        load_pair(base, adapter=str(gpt2), device="cpu")
    _one_line(err.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "truncated"),
        (lambda p: p.write_bytes(b"\x00" * 64), "truncated or not a safetensors"),
        (lambda p: p.unlink(), "has no adapter_model.safetensors"),
        (lambda p: (p.with_suffix(".bin").write_bytes(p.read_bytes()), p.unlink()), "pickle"),
        (lambda p: (p.parent / "adapter_config.json").write_text("{oops"), "config .* unreadable"),
        (lambda p: save_file({}, p), "holds no tensors"),
    ],
    ids=["empty", "truncated", "garbage", "missing", "bin-only", "bad-config", "no-tensors"],
)
def test_broken_adapter_files_are_one_line_errors(
    folders: tuple[str, Path], tmp_path: Path, edit: Callable[[Path], Any], message: str
) -> None:
    base, adapter = folders
    broken = _copy_adapter(adapter, tmp_path / "broken", edit)
    with pytest.raises(AuditlensError, match=message) as err:
        load_pair(base, adapter=str(broken), device="cpu")
    _one_line(err.value)


def test_missing_adapter_folder_is_one_line(folders: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = folders
    with pytest.raises(AuditlensError, match="does not exist") as err:
        load_pair(base, adapter=str(tmp_path / "nowhere"), device="cpu")
    _one_line(err.value)


def test_cli_refuses_a_broken_adapter_with_exit_2(
    folders: tuple[str, Path], tmp_path: Path
) -> None:
    base, adapter = folders
    truncated = _copy_adapter(
        adapter, tmp_path / "cut", lambda p: p.write_bytes(p.read_bytes()[:100])
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "auditlens.cli", "audit", "--base", base, "--adapter",
         str(truncated), "--out", str(out), "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: adapter file"), proc.stderr
    assert "SafetensorError" not in proc.stderr and not (out / "findings.json").exists()
    assert json.loads((adapter / "adapter_config.json").read_text())  # the original is intact
