"""The benchmark runner: failures are reported not fatal, and doc tables are rewritten in place."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import run_all


def test_replace_block_rewrites_only_its_own_markers() -> None:
    text = (
        "intro\n<!-- bench:a:start -->\nold a\n<!-- bench:a:end -->\n"
        "middle\n<!-- bench:b:start -->\nold b\n<!-- bench:b:end -->\nend\n"
    )
    out = run_all.replace_block(text, "a", "new a")
    assert "new a" in out and "old a" not in out
    assert "old b" in out and out.startswith("intro\n") and "middle\n" in out
    again = run_all.replace_block(out, "a", "newer a")
    assert again.count("<!-- bench:a:start -->") == 1 and "new a\n" not in again
    appended = run_all.replace_block(text, "c", "body c")
    assert appended.endswith("<!-- bench:c:start -->\nbody c\n<!-- bench:c:end -->\n")


def _rss_result(peak_small: int, peak_large: int, load: float) -> dict[str, object]:
    def run(n: int, peak: int) -> dict[str, int]:
        return {"prompts": n, "tokens": 40 * n, "stored_bytes": 10**5 * n,
                "rss_after_load_bytes": 5 * 10**8, "peak_rss_bytes": peak}  # fmt: skip

    return {
        "pair": "p", "sites": ["blocks.1.hook_resid_post"], "batch_size": 8, "max_length": 64,
        "shard_prompts": 16, "factor": 10, "small": run(4, peak_small),
        "large": run(40, peak_large), "peak_ratio": peak_large / peak_small,
        "retained_fraction": 0.0, "target": 1.2,
        "machine": {"cpu": "Test CPU", "cores": 2, "torch_threads": 1, "date": "2026-01-02",
                    "load_avg_1m_before": load},
    }  # fmt: skip


def test_render_reports_target_and_load(tmp_path: Path) -> None:
    path = tmp_path / "rss.json"
    path.write_text(json.dumps(_rss_result(10**9, 11 * 10**8, load=0.2)))
    good = run_all.render("rss", path)
    assert "| yes |" in good and "**no**" not in good
    assert "Test CPU, 2 cores, 1 torch thread(s)" in good and "2026-01-02" in good
    assert "under load" not in good
    path.write_text(json.dumps(_rss_result(10**9, 3 * 10**9, load=7.5)))
    bad = run_all.render("rss", path)
    assert "| **no** |" in bad and "Measured under load" in bad
    assert "Not measured yet" in run_all.render("rss", tmp_path / "missing.json")


def test_melbo_json_without_machine_block_renders(tmp_path: Path) -> None:
    path = tmp_path / "melbo_1thread.json"
    path.write_text(json.dumps({
        "n_vectors": 4, "steps": 5, "prompts": 3, "prompt_tokens": [8, 7, 8], "source": "s",
        "target": "t", "seconds_batched": 10.0, "seconds_one_at_a_time": 45.0, "speedup": 4.5,
        "cpu_time_speedup": 3.0, "max_relative_objective_gap": 1e-6, "torch_threads": 1,
        "cpu_count": 2, "loadavg_before": [0.1, 0.1, 0.1], "machine": "x86_64",
    }))  # fmt: skip
    assert run_all.result_path(tmp_path, "melbo") == path
    text = run_all.render("melbo", path)
    assert "4.50× | ≥ 4× | yes" in text and "date not recorded" in text


def test_a_failing_benchmark_is_reported_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = tmp_path / "good.py"
    good.write_text(
        "import json, sys\n"
        "out = sys.argv[sys.argv.index('--out') + 1]\n"
        "open(out, 'w').write(json.dumps({'value': 1}))\n"
    )
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('planted failure')\n")
    for name, script in (("good", good), ("bad", bad)):
        monkeypatch.setitem(
            run_all.BENCHES, name, run_all.Bench(str(script), [], [], 1, 60, lambda r: [])
        )
    ok, message, _ = run_all.run_one("bad", quick=True, results=tmp_path)
    assert not ok and "RuntimeError: planted failure" in message
    ok, message, _ = run_all.run_one("good", quick=True, results=tmp_path)
    assert ok and message == "ok"
    saved = json.loads((tmp_path / "good.json").read_text())
    assert saved["value"] == 1 and saved["run_all"]["quick"] is True
