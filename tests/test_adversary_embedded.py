"""Steering, MELBO and the runner end to end on the embedded SmolLM2-135M (slow)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import torch

from auditlens.adversary import (
    MelboConfig,
    Steer,
    run_perturbations,
    steer_pair,
    train_melbo,
)
from auditlens.generate import generate
from auditlens.hashing import state_dict_sha256
from auditlens.models import load_pair


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """On the shared 2-core box a 2-thread op waits for a descheduled thread (about 30x slower
    under load); one thread keeps this test near 40 s either way."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


PROMPTS = ["Tell me about your plans for today.", "Write a Python function that reads a file."]


@pytest.mark.slow
def test_adversary_end_to_end_on_the_embedded_model() -> None:
    pair = load_pair(device="cpu")
    side = pair.finetuned
    digest = state_dict_sha256(side.hf)
    clean = generate(side, pair.tokenizer, PROMPTS, max_new_tokens=8)

    direction = torch.randn(pair.d_model, generator=torch.Generator().manual_seed(0))
    with steer_pair(
        pair, Steer("blocks.12.hook_resid_post", direction * 200.0, tokens="generated")
    ):
        steered = generate(side, pair.tokenizer, PROMPTS, max_new_tokens=8)
    assert steered != clean

    config = MelboConfig(n_vectors=2, steps=3, lr=1e-2, max_new_tokens=8)
    melbo = train_melbo(pair, PROMPTS, config)
    assert melbo.source == "blocks.7.hook_mlp_out" and melbo.target == "blocks.22.hook_resid_post"
    norms = melbo.vectors.norm(dim=-1)
    assert torch.allclose(norms, torch.full_like(norms, melbo.radius), rtol=1e-5)
    assert abs(float(melbo.vectors[0] @ melbo.vectors[1])) < 1e-3 * melbo.radius**2
    assert len(melbo.generations) == 2 and melbo.baseline_generations == clean

    table = run_perturbations(
        pair, PROMPTS, melbo.steering_vectors(), n_controls=1, max_new_tokens=8
    )
    assert [r.kind for r in table.rows] == ["unperturbed", "melbo", "melbo", "random_control"]
    assert table.row("unperturbed").generations == clean
    assert table.rows[-1].norm == pytest.approx(melbo.radius, rel=1e-5)
    assert "bandit_insecure" in table.rows[0].scores
    json.dumps(table.to_json(), allow_nan=False)
    assert state_dict_sha256(side.hf) == digest
    assert generate(side, pair.tokenizer, PROMPTS, max_new_tokens=8) == clean
