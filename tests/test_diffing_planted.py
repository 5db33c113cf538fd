"""Planted ground truth end to end: a tiny model pair whose fine-tuned copy adds a known
direction on known tokens (and a shared direction planted in both models)."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from auditlens.diffing import diff_sae
from auditlens.diffing.crosscoder import CrosscoderConfig
from auditlens.diffing.crosscoder_analysis import crosscoder_diff
from auditlens.diffing.crosscoder_train import CrosscoderTrainConfig
from auditlens.diffing.diff_sae import DiffSAEConfig
from auditlens.diffing.latents import interpret_latents
from auditlens.diffing.synthetic import plant_feature
from auditlens.harvest import harvest
from auditlens.models import ModelPair
from auditlens.store import ActivationStore

SITE = "blocks.1.hook_resid_post"
FT_IDS = [265, 284, 280]  # " the", " capital", " is" in the tiny tokenizer
SHARED_IDS = [278, 262, 274]
WORDS = ["is", "the", "a", "cat", "dog", "hello", "world", "capital", "France", "Paris"]
WORDS += ["import", "os", "return", "quick", "brown", "fox"]


@dataclass
class Planted:
    pair: ModelPair
    store: ActivationStore
    ft_direction: torch.Tensor
    shared_direction: torch.Tensor


@pytest.fixture(scope="module")
def planted(tiny_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> Planted:
    torch.set_num_threads(1)
    assert [tiny_tokenizer(" " + w)["input_ids"] for w in ("the", "capital", "is")] == [
        [i] for i in FT_IDS
    ]
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )  # fmt: skip
    base = LlamaForCausalLM(cfg).eval()
    ft = copy.deepcopy(base)
    gen = torch.Generator().manual_seed(5)
    u, v = torch.randn(32, generator=gen), torch.randn(32, generator=gen)
    u, v = u / u.norm(), v / v.norm()
    plant_feature(ft, 1, u, 8.0, FT_IDS, jitter=1.0)
    for model in (base, ft):
        plant_feature(model, 1, v, 8.0, SHARED_IDS, jitter=1.0)
    pair = ModelPair.from_models(base, ft, tiny_tokenizer)
    rng = random.Random(0)
    prompts = [{"text": " ".join(rng.choice(WORDS) for _ in range(24))} for _ in range(200)]
    out = tmp_path_factory.mktemp("planted") / "store"
    store = harvest(pair, prompts, [SITE], out, batch_size=50, progress=False)
    return Planted(pair, store, u, v)


def _best(directions: torch.Tensor, target: torch.Tensor) -> tuple[int, float]:
    cos = torch.nn.functional.cosine_similarity(directions, target[None], dim=-1)
    j = int(cos.argmax())
    return j, float(cos[j])


@pytest.mark.parametrize("variant", ["batchtopk", "l1"])
def test_crosscoder_recovers_planted_ft_only_and_shared(planted: Planted, variant: str) -> None:
    cfg = CrosscoderConfig(
        d_model=32, n_latents=64, k=4, variant=variant, l1_coefficient=0.3,
        sites=(SITE,), dead_after_tokens=20_000,
    )  # fmt: skip
    train = CrosscoderTrainConfig(n_steps=600, lr=3e-3, log_every=200)
    res = crosscoder_diff(
        planted.store, config=cfg, train=train, batch_size=256, control=variant == "l1",
        progress=False,
    )  # fmt: skip
    final = res.training.final()
    assert final["fve_base"] > 0.9 and final["fve_finetuned"] > 0.9
    dirs = res.crosscoder.decoder_directions()
    j, cos = _best(dirs["finetuned"], planted.ft_direction)
    assert cos >= 0.9
    assert res.analysis.norm_class[j] == "ft_only"
    assert res.analysis.final_class[j] == "ft_only"
    report = interpret_latents(
        res.crosscoder, planted.store, [j], pair=planted.pair, progress=False
    )
    info = report.get(j)
    assert len(info.top_contexts) == 10
    assert all(c["token_id"] in FT_IDS for c in info.top_contexts)
    assert info.activation_difference > 0  # read from the fine-tuned stream
    assert set(info.logit_effects) == {"base", "finetuned"}
    if variant == "l1":  # base vs base: no exclusive latents
        assert res.control["base_vs_base"]["frac_ft_only"] == 0.0
        assert res.statistics()["frac_ft_only"] > 0
    if variant == "batchtopk":  # the shared plant: a shared latent, not a false ft-only one
        j2, cos2 = _best(dirs["finetuned"], planted.shared_direction)
        assert cos2 >= 0.9
        assert res.analysis.final_class[j2] == "shared"
        assert res.analysis.scaling is not None
        assert float(res.analysis.scaling.ratio_error[j2]) > 0.5


def test_diff_sae_recovers_planted_and_loads_in_sae_lens(planted: Planted, tmp_path: Path) -> None:
    from sae_lens import SAE

    cfg = DiffSAEConfig(d_sae=16, k=1, batch_size=256, n_steps=200)
    res = diff_sae.run(planted.store, SITE, cfg, progress=False)
    j, cos = _best(res.decoder_directions(), planted.ft_direction)
    assert cos >= 0.9
    assert res.stats["fve"] > 0.5
    assert res.control["base_vs_base"]["mean_diff_norm"] == 0.0
    assert res.stats["mean_diff_norm"] > 0
    report = interpret_latents(res, planted.store, [j], pair=planted.pair, progress=False)
    info = report.get(j)
    assert all(c["token_id"] in FT_IDS for c in info.top_contexts)
    assert info.model_activation["finetuned"] - info.model_activation["base"] > 4.0
    as_plain = interpret_latents(  # the same weights read as an SAE on the ft activations
        res.sae, planted.store, [j], site=SITE, input_kind="finetuned", progress=False
    )
    assert as_plain.kind == "sae" and as_plain.latents[0].logit_effects == {}
    assert as_plain.notices  # no pair given: logit effects skipped, and said so
    res.save(tmp_path / "dsae")
    loaded = SAE.load_from_disk(tmp_path / "dsae")
    pairs = planted.store.pairs(SITE)[:512]
    diffs = pairs[:, 1] - pairs[:, 0]
    torch.testing.assert_close(loaded.encode(diffs), res.encode(diffs), atol=1e-5, rtol=1e-4)
    back = diff_sae.load(tmp_path / "dsae")
    torch.testing.assert_close(back.encode(diffs), res.encode(diffs))
    assert back.site == SITE and back.stats == res.stats
