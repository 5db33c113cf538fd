"""Reliability of the step cache: editing the prompts file recomputes every step that reads it;
switching the adapter into the same ``--out`` never leaves a finding citing an artifact computed
for the other adapter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from auditlens.audit import Budget, audit
from auditlens.audit.steps import diffing, layers
from auditlens.models import load_pair
from tests.conftest import make_tiny_model
from tests.test_reliability_adapters import _lora

TINY = Budget("tiny", n_prompts=4, max_length=16, batch_size=4)
STEPS = [layers.STEP, diffing.STEP]


@pytest.fixture
def adapters(tiny_tokenizer: Any, tmp_path: Path) -> tuple[str, Path, Path]:
    """A tiny base folder and two different LoRA adapters for it."""
    base = make_tiny_model("llama", len(tiny_tokenizer))
    base.save_pretrained(tmp_path / "base")
    tiny_tokenizer.save_pretrained(tmp_path / "base")
    torch.manual_seed(1)
    one = _lora(make_tiny_model("llama", len(tiny_tokenizer)), tmp_path / "one", ["q_proj"])
    torch.manual_seed(2)
    two = _lora(make_tiny_model("llama", len(tiny_tokenizer)), tmp_path / "two", ["down_proj"])
    return str(tmp_path / "base"), one, two


def _run(pair: Any, out: Path, prompts: Any) -> Any:
    return audit(pair, out, budget=TINY, prompts=prompts, steps=STEPS, progress=False)


def _cited(report: Any, out: Path) -> dict[str, list[Path]]:
    """Each step's cited artifact files (a finding's id starts with its step's evidence)."""
    keys = report.findings.config["step_keys"]
    cited: dict[str, list[Path]] = {}
    for finding in report.findings.findings:
        for artifact in finding.artifacts:
            parts = Path(artifact).parts
            assert parts[0] == "steps", artifact
            step, key = parts[1], parts[2]
            assert key == keys[step][:16], f"{finding.id} cites {artifact}, not step key {key}"
            cited.setdefault(step, []).append(out / artifact)
    return cited


def test_editing_the_prompts_file_recomputes_every_reader(
    adapters: tuple[str, Path, Path], tmp_path: Path
) -> None:
    base, one, _ = adapters
    pair = load_pair(base, adapter=str(one), device="cpu")
    prompts = tmp_path / "my.jsonl"
    prompts.write_text(
        "\n".join(
            json.dumps({"text": f"{i} hello world, the quick brown fox number {i} jumps"})
            for i in range(4)
        )
    )
    out = tmp_path / "out"
    first = _run(pair, out, str(prompts))
    same = _run(pair, out, str(prompts))
    assert sum("reused" in n for n in same.findings.notices) == len(STEPS)
    prompts.write_text(
        "\n".join(
            json.dumps({"text": f"def f{i}(x): return x * {i} + {i * i}  # helper {i}"})
            for i in range(4)
        )
    )
    edited = _run(pair, out, str(prompts))  # same path, new contents
    assert not any("reused" in n for n in edited.findings.notices)
    for step in ("layers", "diffing"):
        assert first.findings.config["step_keys"][step] != edited.findings.config["step_keys"][step]
    kl = [next(f.value for f in r.findings.findings if f.id == "kl.mean") for r in (first, edited)]
    assert kl[0] != kl[1]


def test_switching_adapter_never_cites_a_foreign_artifact(
    adapters: tuple[str, Path, Path], prompts: list[str], tmp_path: Path
) -> None:
    base, one, two = adapters
    out = tmp_path / "out"
    first = _run(load_pair(base, adapter=str(one), device="cpu"), out, prompts)
    first_files = {p: p.read_bytes() for ps in _cited(first, out).values() for p in ps}
    second = _run(load_pair(base, adapter=str(two), device="cpu"), out, prompts)
    assert not any("reused" in n for n in second.findings.notices)
    cited = _cited(second, out)
    assert {"layers", "diffing"} <= set(cited)
    for paths in cited.values():
        for path in paths:
            assert path.is_file() and path not in first_files
    weight = [p for p in cited["diffing"] if p.suffix == ".json" and "weight" in p.as_posix()]
    assert weight, cited["diffing"]
    rows = json.loads(weight[0].read_text())["rows"]
    changed = {row["module"].rsplit(".", 1)[-1] for row in rows if row["delta_norm"] > 0}
    assert changed == {"down_proj"}  # adapter two's numbers, not adapter one's (q_proj)
    saved = json.loads((out / "findings.json").read_text())
    assert saved["config"]["step_keys"] == second.findings.config["step_keys"]
    for step in ("layers", "diffing"):  # the first adapter's step folders are gone
        assert len(list((out / "steps" / step).iterdir())) == 1
