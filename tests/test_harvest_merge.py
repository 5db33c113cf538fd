"""Harvest sharding: slices harvested apart merge into the store one process writes, bytewise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from auditlens.errors import AuditlensError, StoreError
from auditlens.harvest import harvest, parse_slice, slice_range
from auditlens.models import ModelPair
from auditlens.store import ActivationStore, merge_stores
from tests.conftest import PROMPTS, perturbed_copy

SITES = ["blocks.0.hook_resid_pre", "blocks.2.hook_resid_post"]
OPTS = {"batch_size": 2, "shard_prompts": 2, "progress": False}


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def test_slice_ranges_cover_the_dataset_at_shard_boundaries() -> None:
    ranges = [slice_range(11, i, 3, 2) for i in range(3)]
    assert ranges == [(0, 4), (4, 8), (8, 11)]
    assert [slice_range(10, i, 4, 2) for i in range(4)] == [(0, 2), (2, 4), (4, 6), (6, 10)]
    assert slice_range(5, 0, 1, 8) == (0, 5)
    with pytest.raises(AuditlensError, match="only 2 shards"):
        slice_range(4, 0, 3, 2)
    with pytest.raises(AuditlensError):
        slice_range(4, 3, 3, 1)
    assert parse_slice("1/4") == (1, 4)
    for bad in ("1", "a/b", "4/4", "-1/2"):
        with pytest.raises(AuditlensError):
            parse_slice(bad)


def test_merged_slices_equal_a_single_harvest_byte_for_byte(
    tiny_pair: ModelPair, tmp_path: Path
) -> None:
    whole = harvest(tiny_pair, PROMPTS, SITES, tmp_path / "whole", **OPTS)
    parts = []
    for i in range(3):
        rng = slice_range(len(PROMPTS), i, 3, 2)
        part = harvest(tiny_pair, PROMPTS, SITES, tmp_path / f"part{i}", prompt_range=rng, **OPTS)
        assert part.manifest["slice"] == {"start": rng[0], "stop": rng[1]}
        parts.append(tmp_path / f"part{i}")
    merged = merge_stores(parts[::-1], tmp_path / "merged")  # any order of sources
    assert _files(tmp_path / "merged") == _files(tmp_path / "whole")
    assert merged.n_tokens == whole.n_tokens
    for site in SITES:
        assert merged.pairs(site).equal(whole.pairs(site))
    assert merged.prompt_tokens(len(PROMPTS) - 1) == whole.prompt_tokens(len(PROMPTS) - 1)
    again = harvest(tiny_pair, PROMPTS, SITES, tmp_path / "merged", **OPTS)  # resumable as is
    assert again.n_tokens == whole.n_tokens
    assert _files(tmp_path / "merged") == _files(tmp_path / "whole")


def test_merge_refuses_mismatched_overlapping_or_missing_slices(
    tiny_pair: ModelPair, tmp_path: Path
) -> None:
    def part(name: str, rng: tuple[int, int], pair: ModelPair = tiny_pair, **kw: object) -> Path:
        harvest(pair, PROMPTS, SITES, tmp_path / name, prompt_range=rng, **{**OPTS, **kw})
        return tmp_path / name

    a, b = part("a", (0, 6)), part("b", (6, 11))
    with pytest.raises(StoreError, match="a slice is missing"):
        merge_stores([a], tmp_path / "m1")
    with pytest.raises(StoreError, match="overlaps"):
        merge_stores([a, b, part("c", (4, 8))], tmp_path / "m2")
    base = tiny_pair.base.module
    other = ModelPair.from_models(base, perturbed_copy(base, seed=9), tiny_pair.tokenizer)
    with pytest.raises(StoreError, match="finetuned model sha256"):
        merge_stores([a, part("d", (6, 11), other)], tmp_path / "m3")
    with pytest.raises(StoreError, match="dtype"):
        merge_stores([a, part("e", (6, 11), dtype="float16")], tmp_path / "m4")
    with pytest.raises(StoreError, match="one of the sources"):
        merge_stores([a, b], a)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "junk").write_text("x")
    with pytest.raises(StoreError, match="not empty"):
        merge_stores([a, b], tmp_path / "full")
    assert merge_stores([a, b], tmp_path / "full", overwrite=True).n_tokens > 0
    manifest = json.loads((b / "manifest.json").read_text())
    (b / manifest["shards"][0]["file"]).write_bytes(b"corrupt")
    with pytest.raises(StoreError, match="missing or corrupt"):
        merge_stores([a, b], tmp_path / "m5")
    with pytest.raises(AuditlensError, match="shard boundaries"):
        harvest(tiny_pair, PROMPTS, SITES, tmp_path / "odd", prompt_range=(1, 4), **OPTS)
    with pytest.raises(StoreError, match="slice"):  # resuming with another slice
        harvest(tiny_pair, PROMPTS, SITES, a, prompt_range=(0, 4), **OPTS)


def test_cli_harvest_slices_and_merge(tiny_pair: ModelPair, tmp_path: Path) -> None:
    base_dir, ft_dir = tmp_path / "base", tmp_path / "ft"
    for model, directory in (
        (tiny_pair.base.module, base_dir),
        (tiny_pair.finetuned.module, ft_dir),
    ):
        model.save_pretrained(directory)  # type: ignore[operator]
        tiny_pair.tokenizer.save_pretrained(directory)
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"text": p}) + "\n" for p in PROMPTS))
    common = ["--sites", ",".join(SITES), "--prompts", str(data), "--base", str(base_dir),
              "--finetuned", str(ft_dir), "--batch-size", "1", "--device", "cpu"]  # fmt: skip

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "auditlens.cli", *args], capture_output=True,
                              text=True, timeout=300)  # fmt: skip

    for i in range(2):
        proc = cli("harvest", "--out", str(tmp_path / f"s{i}"), "--slice", f"{i}/2", *common)
        assert proc.returncode == 0, proc.stderr
    proc = cli(
        "harvest-merge", "--out", str(tmp_path / "m"), str(tmp_path / "s0"), str(tmp_path / "s1")
    )
    assert proc.returncode == 0, proc.stderr
    store = ActivationStore.open(tmp_path / "m")
    assert store.manifest["complete"] and "slice" not in store.manifest
    assert sorted(set(store.prompt_index().tolist())) == list(range(len(PROMPTS)))
    assert cli("harvest-merge", "--help").returncode == 0
