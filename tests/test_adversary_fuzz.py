"""Fuzzing: σ=0 is exact, noise has the documented norm, weight noise restores exactly."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import Tensor

from auditlens.adversary import ActivationNoise, fuzz_activations, weight_noise_sweep
from auditlens.adversary.fuzz import activation_noise, generation_task, weight_noise
from auditlens.errors import AuditlensError
from auditlens.generate import generate
from auditlens.hashing import state_dict_sha256
from auditlens.hooks import attach_edit
from auditlens.models import ModelPair, ModelSide
from auditlens.sites import parse_site
from auditlens.steering import mean_activation_norm

SITE = "blocks.1.hook_resid_post"


def _logits(pair: ModelPair, texts: list[str]) -> Tensor:
    enc = pair.tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return pair.finetuned.hf(**enc).logits  # type: ignore[no-any-return]


def test_sigma_zero_reproduces_the_unperturbed_outputs_exactly(
    tiny_pair: ModelPair, prompts: list[str]
) -> None:
    side, tok = tiny_pair.finetuned, tiny_pair.tokenizer
    clean_logits = _logits(tiny_pair, prompts[:4])
    clean_text = generate(side, tok, prompts[:4], max_new_tokens=6)
    for site in (SITE, "blocks.0.hook_resid_pre", "blocks.2.hook_attn_out"):
        noise = ActivationNoise(site, 0.0, seed=3, mean_norm=1.0)
        with noise.apply(side, tiny_pair.arch):
            assert torch.equal(_logits(tiny_pair, prompts[:4]), clean_logits)
            assert generate(side, tok, prompts[:4], max_new_tokens=6) == clean_text
        with activation_noise(side, tiny_pair.arch, site, 0.0, seed=0):
            assert torch.equal(_logits(tiny_pair, prompts[:4]), clean_logits)
    table = fuzz_activations(
        tiny_pair, prompts[:4], SITE, sigmas=(0.0, 2.0), seeds=(0, 1), scorers=[], max_new_tokens=6
    )
    assert table.row("unperturbed").generations == clean_text
    for row in table.rows:
        if row.sigma == 0.0:
            assert row.generations == clean_text and row.kl_mean == 0.0
    assert any(r.generations != clean_text for r in table.rows if r.sigma == 2.0)


def test_relative_noise_has_norm_sigma_times_mean_norm(
    tiny_pair: ModelPair, prompts: list[str]
) -> None:
    side, arch, model = tiny_pair.finetuned, tiny_pair.arch, tiny_pair.finetuned.hf
    mean = mean_activation_norm(side, arch, tiny_pair.tokenizer, prompts, SITE)
    noise = ActivationNoise(SITE, 0.5, seed=1).with_mean_norm(mean)
    seen: list[Tensor] = []

    def keep(hidden: Tensor) -> Tensor:
        seen.append(hidden.detach().clone())
        return hidden

    enc = tiny_pair.tokenizer(prompts, return_tensors="pt", padding=True)
    handle = attach_edit(model, arch, parse_site(SITE, 3), keep)
    try:
        with torch.no_grad(), noise.apply(side, arch):
            attach_after = attach_edit(model, arch, parse_site(SITE, 3), keep)
            model(**enc)
            attach_after.remove()
    finally:
        handle.remove()
    added = (seen[1] - seen[0]).norm(dim=-1)
    assert float(added.mean()) == pytest.approx(0.5 * mean, rel=0.1)
    # absolute noise is per-coordinate sigma
    assert ActivationNoise(SITE, 0.5, relative=False).scale(32) == 0.5
    assert noise.scale(32) == pytest.approx(0.5 * mean / 32**0.5)


def test_noise_is_seeded(tiny_pair: ModelPair, prompts: list[str]) -> None:
    side, arch = tiny_pair.finetuned, tiny_pair.arch
    outs = []
    for seed in (0, 0, 1):
        with activation_noise(side, arch, SITE, 0.5, seed=seed):
            outs.append(_logits(tiny_pair, prompts[:3]))
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


def test_weight_noise_restores_weights_exactly(tiny_pair: ModelPair, prompts: list[str]) -> None:
    model = tiny_pair.finetuned.hf
    before = {k: v.clone() for k, v in model.state_dict().items()}
    digest = state_dict_sha256(model)
    clean = _logits(tiny_pair, prompts[:3])
    with weight_noise(model, 0.1, seed=0) as info:
        assert info.n_tensors == len(list(model.parameters()))
        assert not torch.equal(_logits(tiny_pair, prompts[:3]), clean)
        changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
        assert changed
    assert state_dict_sha256(model) == digest
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert torch.equal(_logits(tiny_pair, prompts[:3]), clean)
    with (
        pytest.raises(RuntimeError, match="boom"),
        weight_noise(model, 1.0, seed=1, parameters="matrices"),
    ):
        raise RuntimeError("boom")
    assert state_dict_sha256(model) == digest
    with weight_noise(model, 0.1, seed=0, parameters="matrices"):
        vectors = [(n, p) for n, p in model.named_parameters() if p.dim() == 1]
        assert vectors and all(torch.equal(p, before[n]) for n, p in vectors)


def test_weight_noise_sweep_flags_only_improvements(
    tiny_pair: ModelPair, prompts: list[str]
) -> None:
    side = tiny_pair.finetuned
    weight = side.hf.get_input_embeddings().weight
    original = weight.detach().clone()

    def sandbagger(s: ModelSide) -> list[float]:
        """Scores better whenever its weights are disturbed (the signature of sandbagging)."""
        disturbed = not torch.equal(weight, original)
        return [0.9 if disturbed else 0.2] * 6 + [0.5] * 2

    def honest(s: ModelSide) -> list[float]:
        disturbed = not torch.equal(weight, original)
        return [0.1 if disturbed else 0.8] * 8

    flagged = weight_noise_sweep(side, sandbagger, sigmas=(0.0, 0.01), seeds=(0, 1), n_boot=200)
    assert flagged.flagged and flagged.weights_restored
    assert [r.improved for r in flagged.rows] == [False, False, True, True]
    assert flagged.rows[2].delta == pytest.approx(0.7 * 6 / 8)
    clean = weight_noise_sweep(side, honest, sigmas=(0.01, 0.1), seeds=(0,), n_boot=200)
    assert not clean.flagged and all(r.delta < 0 for r in clean.rows)
    json.dumps(flagged.to_json(), allow_nan=False)
    assert torch.equal(weight, original)


def test_generation_task_runs_under_weight_noise(tiny_pair: ModelPair, prompts: list[str]) -> None:
    task = generation_task(
        tiny_pair.tokenizer,
        prompts[:3],
        lambda texts: [float(len(t)) for t in texts],
        max_new_tokens=4,
    )
    sweep = weight_noise_sweep(tiny_pair.finetuned, task, sigmas=(0.05,), seeds=(0,), n_boot=50)
    assert sweep.n_items == 3 and len(sweep.rows) == 1


def test_noise_validation(tiny_pair: ModelPair) -> None:
    with pytest.raises(AuditlensError, match="sigma must be finite"):
        ActivationNoise(SITE, -1.0)
    with pytest.raises(AuditlensError, match="needs the site's mean_norm"):
        ActivationNoise(SITE, 1.0).scale(32)
    model: Any = tiny_pair.finetuned.hf
    with (
        pytest.raises(AuditlensError, match="sigma must be finite"),
        weight_noise(model, -0.1, seed=0),
    ):
        pass
