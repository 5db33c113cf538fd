"""benchmarks/gpu.py runs on the CPU with a tiny shape; every benchmark takes --device."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).parents[1] / "benchmarks"


def test_every_benchmark_takes_a_device_option() -> None:
    scripts = sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))
    assert {"gpu.py", "generation.py", "harvest.py", "melbo.py"} <= {p.name for p in scripts}
    # a replay of cached audits declares that it runs no model, and must not load one
    free = [p for p in scripts if "\nMODEL_FREE = True" in p.read_text()]
    for p in free:
        text = p.read_text()
        assert "load_pair" not in text and "auditlens.models" not in text, p.name
        assert "from_pretrained" not in text and '"--device"' not in text, p.name
    missing = [p.name for p in scripts if p not in free and '"--device"' not in p.read_text()]
    assert not missing, f"benchmarks without --device: {missing}"


def _run_quick(tmp_path: Path, device: str) -> dict:  # type: ignore[type-arg]
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "gpu.py"), "--quick", "--device", device,
         "--out-dir", str(out), "--tokenizer", str(tmp_path / "tokenizer")],
        capture_output=True, text=True, timeout=900,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads((out / "gpu.json").read_text())
    table = (out / "gpu.md").read_text()
    assert "Generation (rows × new tokens" in table and "MELBO" in table and "Crosscoder" in table
    return result


@pytest.mark.slow
def test_gpu_script_quick_mode_on_cpu(tmp_path: Path) -> None:
    r = _run_quick(tmp_path, "cpu")
    tiny = r["shapes"]["tiny"]
    gen = tiny["generation"]
    assert "error" not in gen, gen
    assert gen["new_equal_to_old"] == gen["old_ft_batch8"]["rows"]  # greedy: the same texts
    assert gen["new_pair_mixed"]["rows"] == 2 * gen["prompts"]
    assert gen["base_plus_merged"]["tokens_per_s"] > 0
    assert tiny["harvest"]["ratio"] > 0 and tiny["melbo"]["max_relative_gap"] < 1e-4
    assert r["crosscoder"]["none"]["tokens_per_s"] > 0
    assert r["matmul_peak"]["float32"] > 0 and not r["skipped"]


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_script_quick_mode_on_cuda(tmp_path: Path) -> None:
    r = _run_quick(tmp_path, "cuda")
    gen = r["shapes"]["tiny"]["generation"]
    assert "error" not in gen and gen["new_pair_mixed"]["peak_gib"] >= 0
