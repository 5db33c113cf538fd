"""MELBO: batched == one-at-a-time, sphere and orthogonality, pair objective, save/load."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from auditlens.adversary import MelboConfig, train_melbo
from auditlens.adversary._melbo_reference import train_melbo_reference
from auditlens.adversary.melbo import MelboResult, default_melbo_sites, melbo_objective
from auditlens.errors import AuditlensError
from auditlens.hashing import state_dict_sha256
from auditlens.models import ModelPair
from auditlens.steering import mean_activation_norm
from tests.conftest import perturbed_copy

FAST = MelboConfig(n_vectors=4, steps=20, lr=5e-2, radius=1.0, max_new_tokens=0)


def _nonlinear(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Large random matrices so the tiny blocks are far from the identity map."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
    return model


@pytest.fixture
def pair64(tiny_model_factory: Any, tiny_tokenizer: Any) -> ModelPair:
    base = _nonlinear(tiny_model_factory("llama")).double()
    return ModelPair.from_models(base, perturbed_copy(base, scale=0.3), tiny_tokenizer)


def test_batched_matches_one_vector_at_a_time(pair64: ModelPair, prompts: list[str]) -> None:
    batched = train_melbo(pair64, prompts[:3], FAST)
    plain = train_melbo_reference(pair64, prompts[:3], FAST)
    assert batched.objective.shape == plain.objective.shape == (20, 4)
    assert (batched.objective - plain.objective).abs().max() < 1e-4
    assert (batched.vectors - plain.vectors).abs().max() < 1e-6
    # the optimisation did something: every vector's objective rose
    assert (batched.objective[-1] > batched.objective[0] * 1.01).all()


def test_vectors_stay_on_the_sphere_and_orthogonal(pair64: ModelPair, prompts: list[str]) -> None:
    result = train_melbo(pair64, prompts[:3], replace(FAST, n_vectors=6))
    norms = result.vectors.norm(dim=-1)
    torch.testing.assert_close(norms, torch.full_like(norms, result.radius), rtol=1e-10, atol=0)
    gram = result.vectors @ result.vectors.T
    off = gram - torch.diag(gram.diagonal())
    assert off.abs().max() < 1e-9 * result.radius**2


def test_relative_and_absolute_radius(pair64: ModelPair, prompts: list[str]) -> None:
    cfg = replace(FAST, steps=1, radius=0.5)
    rel = train_melbo(pair64, prompts[:3], cfg)
    source = rel.source
    mean = mean_activation_norm(
        pair64.finetuned, pair64.arch, pair64.tokenizer, prompts[:3], source
    )
    assert rel.radius == pytest.approx(0.5 * mean)
    absolute = train_melbo(pair64, prompts[:3], replace(cfg, relative=False, radius=3.0))
    assert absolute.radius == 3.0
    assert absolute.vectors.norm(dim=-1).sub(3.0).abs().max() < 1e-9


def test_pair_objective_and_equivalence(pair64: ModelPair, prompts: list[str]) -> None:
    cfg = replace(FAST, steps=6, base_weight=0.5, n_vectors=3)
    batched = train_melbo(pair64, prompts[:3], cfg)
    plain = train_melbo_reference(pair64, prompts[:3], cfg)
    assert batched.side == "finetuned_vs_base"
    assert batched.objective_finetuned is not None and batched.objective_base is not None
    combined = batched.objective_finetuned - 0.5 * batched.objective_base
    torch.testing.assert_close(batched.objective, combined)
    assert (batched.objective - plain.objective).abs().max() < 1e-4
    with pytest.raises(AuditlensError, match="needs side='finetuned'"):
        train_melbo(pair64, prompts[:3], cfg, side="base")


def test_chunked_passes_are_exact(pair64: ModelPair, prompts: list[str]) -> None:
    cfg = replace(FAST, steps=4)
    whole = train_melbo(pair64, prompts[:3], cfg)
    chunked = train_melbo(pair64, prompts[:3], replace(cfg, vectors_per_pass=3))
    assert (whole.objective - chunked.objective).abs().max() < 1e-9


def test_objective_matches_a_direct_computation() -> None:
    gen = torch.Generator().manual_seed(0)
    steered = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64)
    clean = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)
    mask = torch.rand(3, 4, generator=gen) > 0.3
    p, q = 3.0, 1.5
    got = melbo_objective(steered, clean, mask, p, q)
    for k in range(2):
        total = sum(
            float(torch.linalg.vector_norm(steered[k, b, s] - clean[b, s])) ** p
            for b in range(3)
            for s in range(4)
            if mask[b, s]
        )
        assert float(got[k]) == pytest.approx(total ** (1 / q))


def test_generations_save_load_and_no_change_to_the_model(
    tiny_pair: ModelPair, prompts: list[str], tmp_path: Path
) -> None:
    model = tiny_pair.finetuned.hf
    digest = state_dict_sha256(model)
    cfg = MelboConfig(n_vectors=2, steps=3, max_new_tokens=3)
    result = train_melbo(tiny_pair, prompts[:2], cfg)
    assert state_dict_sha256(model) == digest
    assert all(p.grad is None for p in model.parameters())
    assert len(result.generations) == 2 and all(len(g) == 2 for g in result.generations)
    assert len(result.baseline_generations) == 2
    folder = result.save(tmp_path / "melbo")
    loaded = MelboResult.load(folder)
    assert torch.equal(loaded.vectors, result.vectors)
    assert torch.equal(loaded.objective, result.objective)
    assert loaded.config == cfg and loaded.generations == result.generations
    json.dumps(result.to_json(), allow_nan=False)
    vectors = result.steering_vectors()
    assert [v.name for v in vectors] == ["melbo_0", "melbo_1"]
    assert all(v.site == result.source and v.kind == "melbo" for v in vectors)


def test_default_sites_scale_with_depth() -> None:
    assert default_melbo_sites(30) == ("blocks.7.hook_mlp_out", "blocks.22.hook_resid_post")
    assert default_melbo_sites(40) == ("blocks.9.hook_mlp_out", "blocks.32.hook_resid_post")
    assert default_melbo_sites(3) == ("blocks.1.hook_mlp_out", "blocks.2.hook_resid_post")
    assert default_melbo_sites(2) == ("blocks.0.hook_mlp_out", "blocks.1.hook_resid_post")


def test_config_and_site_validation(tiny_pair: ModelPair, prompts: list[str]) -> None:
    with pytest.raises(AuditlensError, match="radius must be positive"):
        MelboConfig(radius=0)
    with pytest.raises(AuditlensError, match="n_vectors"):
        MelboConfig(n_vectors=0)
    bad = MelboConfig(source="blocks.2.hook_mlp_out", target="blocks.1.hook_resid_post", steps=1)
    with pytest.raises(AuditlensError, match="must come after the source"):
        train_melbo(tiny_pair, prompts[:2], bad)
    with pytest.raises(AuditlensError, match="below d_model"):
        train_melbo(tiny_pair, prompts[:2], MelboConfig(n_vectors=32, steps=1))
