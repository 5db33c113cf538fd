"""Slow tests on the embedded SmolLM2-135M-Instruct model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow


def test_embedded_harvest_two_sites(tmp_path: Path) -> None:
    from auditlens.harvest import harvest
    from auditlens.models import load_pair

    pair = load_pair(device="cpu")
    assert (pair.n_layers, pair.d_model, len(pair.tokenizer)) == (30, 576, 49152)
    sites = ["blocks.5.hook_resid_post", "blocks.-1.hook_mlp_out"]
    store = harvest(pair, "code_tasks", sites, tmp_path / "h", batch_size=4, max_length=64,
                    shard_prompts=8, progress=False)  # fmt: skip
    assert store.sites == ["blocks.5.hook_resid_post", "blocks.29.hook_mlp_out"]
    for site in store.sites:
        acts = store.pairs(site)
        assert acts.shape == (store.n_tokens, 2, 576) and store.n_tokens > 100
        assert torch.isfinite(acts).all()
        torch.testing.assert_close(acts[:, 0], acts[:, 1])  # base vs base: identical sides
