"""Harvesting: round trip, resume after kill -9, corrupt shards, mismatches, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from auditlens.datasets import MaskSpec
from auditlens.errors import AuditlensError, StoreError
from auditlens.harvest import harvest
from auditlens.models import ModelPair
from auditlens.store import ActivationStore

SITES = [
    "blocks.0.hook_resid_pre",
    "blocks.1.hook_attn_out",
    "blocks.1.hook_mlp_out",
    "blocks.2.hook_resid_post",
]


def _direct(pair: ModelPair, text: str, site_layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """resid_post of one block for both models, by a plain forward hook (the ground truth)."""
    ids = pair.tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
    )
    enc = pair.tokenizer(ids, return_tensors="pt", add_special_tokens=False)
    outs = []
    for side in pair.sides:
        grabbed: list[torch.Tensor] = []
        block = side.hf.model.layers[site_layer]  # type: ignore[union-attr,index]
        h = block.register_forward_hook(
            lambda m, i, o, grabbed=grabbed: grabbed.append(o[0] if isinstance(o, tuple) else o)
        )
        with torch.no_grad():
            side.hf(**enc)
        h.remove()
        outs.append(grabbed[0][0])
    return outs[0], outs[1]


def test_harvest_round_trip_equals_direct_forward(
    tiny_pair: ModelPair, prompts: list[str], tmp_path: Path
) -> None:
    store = harvest(tiny_pair, prompts, SITES, tmp_path / "h", batch_size=4, shard_prompts=4)
    assert store.sites == SITES and store.d_model == 32
    pairs = store.pairs("blocks.2.hook_resid_post")
    assert pairs.shape == (store.n_tokens, 2, 32)
    pidx, pos = store.prompt_index(), store.positions()
    for p, text in enumerate(prompts):
        base, ft = _direct(tiny_pair, text, 2)
        rows = (pidx == p).nonzero().flatten()
        assert len(rows) == base.shape[0]
        assert pos[rows].tolist() == list(range(base.shape[0]))
        torch.testing.assert_close(pairs[rows, 0], base, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(pairs[rows, 1], ft, atol=1e-5, rtol=1e-5)
        assert store.prompt_tokens(p) == store.tokens()[rows].tolist()
    manifest = json.loads((tmp_path / "h" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["n_tokens"] == store.n_tokens
    assert manifest["models"]["base"]["sha256"] == tiny_pair.base.sha256
    assert manifest["models"]["base"]["sha256"] != manifest["models"]["finetuned"]["sha256"]
    assert len(manifest["shards"]) == 3 and all(len(s["sha256"]) == 64 for s in manifest["shards"])
    batches = list(store.iter_batches("blocks.0.hook_resid_pre", 16, shuffle=True, seed=1))
    assert sum(b.shape[0] for b in batches) == store.n_tokens
    ctx = store.contexts(5, window=2, tokenizer=tiny_pair.tokenizer)[0]
    assert ctx.focus == 2 and "⟦" in ctx.render()


def test_masks_select_assistant_and_last_k(tiny_pair: ModelPair, tmp_path: Path) -> None:
    chat = [
        {
            "messages": [
                {"role": "user", "content": "hello world"},
                {"role": "assistant", "content": "return a + b"},
            ]
        }
    ]
    store = harvest(tiny_pair, chat, SITES[:1], tmp_path / "a", mask="assistant", batch_size=1)
    text = tiny_pair.tokenizer.decode(store.tokens().tolist())
    assert text.strip() == "return a + b"
    last = harvest(
        tiny_pair, ["hello world"], SITES[:1], tmp_path / "k", mask=MaskSpec("last_k", 3)
    )
    assert last.n_tokens == 3
    full = harvest(tiny_pair, ["hello world"], SITES[:1], tmp_path / "f")
    assert last.positions().tolist() == full.positions()[-3:].tolist()
    torch.testing.assert_close(last.pairs(SITES[0]), full.pairs(SITES[0])[-3:])


def test_storage_dtypes(tiny_pair: ModelPair, prompts: list[str], tmp_path: Path) -> None:
    ref = harvest(tiny_pair, prompts[:3], SITES[-1:], tmp_path / "f32").pairs(SITES[-1])
    for dtype, torch_dtype in (("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        got = harvest(tiny_pair, prompts[:3], SITES[-1:], tmp_path / dtype, dtype=dtype).pairs(
            SITES[-1]
        )
        assert got.dtype == torch_dtype
        torch.testing.assert_close(got.float(), ref, atol=0.05, rtol=0.02)
    with pytest.raises(AuditlensError, match="unknown storage dtype"):
        harvest(tiny_pair, prompts, SITES, tmp_path / "x", dtype="int8")


_KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {root!r})
os.environ["AUDITLENS_PROGRESS"] = "0"
from tests.conftest import build_tiny_tokenizer, make_tiny_model, perturbed_copy, PROMPTS
from auditlens.models import ModelPair
from auditlens.harvest import harvest
tok = build_tiny_tokenizer(Path({tok!r}))
base = make_tiny_model("llama", len(tok))
pair = ModelPair.from_models(base, perturbed_copy(base), tok)
def on_shard(n):
    if n == 2:
        Path({out!r}, "shard_00000008.safetensors").write_bytes(b"partial garbage")
        os.kill(os.getpid(), signal.SIGKILL)
harvest(pair, PROMPTS, {sites!r}, {out!r}, batch_size=2, shard_prompts=4, on_shard=on_shard)
"""


def test_resume_after_kill_9(tiny_pair: ModelPair, prompts: list[str], tmp_path: Path) -> None:
    out = tmp_path / "h"
    script = _KILL_SCRIPT.format(
        root=str(Path(__file__).parents[1]), tok=str(tmp_path / "tok"), out=str(out), sites=SITES
    )
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and len(manifest["shards"]) == 2
    with pytest.raises(StoreError, match="incomplete harvest"):
        ActivationStore.open(out)
    # Resume in this process: the subprocess built the same tiny models from the same seeds.
    from tests.conftest import build_tiny_tokenizer, make_tiny_model, perturbed_copy

    tok = build_tiny_tokenizer(tmp_path / "tok")
    base = make_tiny_model("llama", len(tok))
    pair = ModelPair.from_models(base, perturbed_copy(base), tok)
    kept = {s["file"]: s["sha256"] for s in manifest["shards"]}
    resumed = harvest(pair, prompts, SITES, out, batch_size=2, shard_prompts=4)
    after = json.loads((out / "manifest.json").read_text())
    for shard in after["shards"]:  # the two complete shards were kept, not recomputed
        if shard["file"] in kept:
            assert shard["sha256"] == kept[shard["file"]]
    fresh = harvest(pair, prompts, SITES, tmp_path / "fresh", batch_size=2, shard_prompts=4)
    for site in SITES:
        torch.testing.assert_close(resumed.pairs(site), fresh.pairs(site), atol=0, rtol=0)
    assert ActivationStore.open(out).n_tokens == fresh.n_tokens


def test_corrupt_shard_is_detected_and_redone(
    tiny_pair: ModelPair, prompts: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "h"
    store = harvest(tiny_pair, prompts, SITES, out, batch_size=4, shard_prompts=4)
    expected = store.pairs(SITES[1])
    shard = out / store.manifest["shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="fails its checksum"):
        ActivationStore.open(out)
    shard.write_bytes(bytes(data[: len(data) // 2]))  # truncated, as after a crash mid-write
    with pytest.raises(StoreError, match=r"shard_00000004\.safetensors fails its checksum"):
        ActivationStore.open(out)
    redone = harvest(tiny_pair, prompts, SITES, out, batch_size=4, shard_prompts=4)
    torch.testing.assert_close(redone.pairs(SITES[1]), expected, atol=0, rtol=0)
    ActivationStore.open(out)


def test_manifest_mismatch_is_an_error(
    tiny_pair: ModelPair, prompts: list[str], tmp_path: Path, tiny_model_factory: Any
) -> None:
    out = tmp_path / "h"
    harvest(tiny_pair, prompts, SITES, out, batch_size=4)
    with pytest.raises(StoreError, match="different dataset"):
        harvest(tiny_pair, prompts[:5], SITES, out, batch_size=4)
    with pytest.raises(StoreError, match="different sites"):
        harvest(tiny_pair, prompts, SITES[:2], out, batch_size=4)
    other = ModelPair.from_models(tiny_model_factory(seed=7), None, tiny_pair.tokenizer)
    with pytest.raises(StoreError, match="different base model sha256"):
        harvest(other, prompts, SITES, out, batch_size=4)
    with pytest.raises(StoreError, match="different dtype"):
        harvest(tiny_pair, prompts, SITES, out, batch_size=4, dtype="float16")
    harvest(tiny_pair, prompts[:5], SITES, out, batch_size=4, overwrite=True)
    assert ActivationStore.open(out).n_prompts == 5


def test_store_errors_are_clear(tmp_path: Path, tiny_pair: ModelPair) -> None:
    with pytest.raises(StoreError, match="not an activation store"):
        ActivationStore.open(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(StoreError, match="is corrupt"):
        ActivationStore.open(tmp_path)
    store = harvest(tiny_pair, ["hello"], SITES[:1], tmp_path / "ok")
    with pytest.raises(StoreError, match="was not harvested"):
        store.pairs("blocks.2.hook_mlp_out")


def test_nan_activations_are_refused(tiny_pair: ModelPair, tmp_path: Path) -> None:
    with torch.no_grad():
        tiny_pair.finetuned.hf.model.layers[0].mlp.down_proj.weight.fill_(float("nan"))  # type: ignore[union-attr,index]
    with pytest.raises(AuditlensError, match="non-finite activations"):
        harvest(tiny_pair, ["hello"], SITES, tmp_path / "nan")


_RSS_SCRIPT = """
import os, resource, sys
from pathlib import Path
sys.path.insert(0, {root!r})
os.environ["AUDITLENS_PROGRESS"] = "0"
import torch
from tests.conftest import build_tiny_tokenizer, make_tiny_model, perturbed_copy
from auditlens.models import ModelPair
from auditlens.harvest import harvest
tok = build_tiny_tokenizer(Path({tok!r}))
base = make_tiny_model("llama", len(tok), d_model=384)
pair = ModelPair.from_models(base, perturbed_copy(base), tok)
words = "the quick brown fox jumps over the lazy dog hello world def add return".split()
prompts = [" ".join(words[(i + j) % len(words)] for j in range(40)) for i in range({n})]
harvest(pair, prompts, {sites!r}, {out!r}, batch_size=8, shard_prompts=16)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_peak_memory_does_not_grow_with_prompts(tmp_path: Path) -> None:
    """10x the prompts (about 10x the stored bytes) must raise peak RSS by under 20%."""
    root = str(Path(__file__).parents[1])
    peaks = []
    for n in (30, 300):
        script = _RSS_SCRIPT.format(
            root=root, tok=str(tmp_path / "tok"), n=n, sites=SITES, out=str(tmp_path / f"h{n}")
        )
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        peaks.append(int(proc.stdout.strip().splitlines()[-1]))
    stored = sum(f.stat().st_size for f in (tmp_path / "h300").glob("*.safetensors"))
    assert stored > 150e6  # the 10x harvest really stores far more than the 20% margin
    assert peaks[1] < 1.2 * peaks[0], peaks
