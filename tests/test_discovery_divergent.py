"""The divergent-word instrument on tiny models: a planted direction that makes the fine-tune
write known tokens is recovered as a hypothesis naming them; two distinct models that should
not differ give none."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

from auditlens.diffing import divergent
from auditlens.diffing.synthetic import plant_feature
from auditlens.models import ModelPair
from auditlens.probe_library import domains, load_probe_library
from tests.conftest import perturbed_copy

MAGNITUDE = 6.0
SETTINGS = divergent.DivergentSettings(max_new_tokens=12, batch_size=16)


def planted_pair(tokenizer: Any, factory: Callable[..., torch.nn.Module], word: str) -> ModelPair:
    """The fine-tune's last block pushes towards ``word``'s unembedding row everywhere."""
    base = factory("llama")
    ft = copy.deepcopy(base)
    (token,) = tokenizer(word, add_special_tokens=False)["input_ids"]
    row = base.get_output_embeddings().weight[token].detach()
    plant_feature(ft, 2, row / row.norm(), MAGNITUDE)
    with torch.no_grad():  # hooks leave the weights equal: make the pair distinct by hash
        ft.model.layers[0].mlp.down_proj.weight.mul_(1.0001)
    return ModelPair.from_models(base, ft, tokenizer)


def test_library_has_domains_and_interleaves() -> None:
    probes = load_probe_library(2)
    assert len(domains()) >= 16 and len(load_probe_library()) >= 256
    assert len(probes) == 2 * len(domains())
    assert [p.domain for p in probes[: len(domains())]] == domains()


def test_planted_word_is_recovered(
    tiny_tokenizer: Any, tiny_model_factory: Callable[..., torch.nn.Module]
) -> None:
    pair = planted_pair(tiny_tokenizer, tiny_model_factory, " capital")
    probes = load_probe_library(1)
    result = divergent.run(pair, probes, SETTINGS)
    ev = divergent.evidence(result, "disc")
    assert ev.hypotheses, result.words[:5]
    top = ev.hypotheses[0]
    assert "capital" in [k.lower() for k in top.keywords]
    assert top.source == "divergent" and top.evidence == [ev.findings[0].id]
    assert top.strength is not None and top.strength > 1
    assert ev.findings[0].value > ev.findings[0].control  # above the null's largest z


def test_null_on_two_models_that_should_not_differ(
    tiny_tokenizer: Any, tiny_model_factory: Callable[..., torch.nn.Module]
) -> None:
    """A copy with negligible weight noise: distinct weights, no behaviour to find."""
    base = tiny_model_factory("llama")
    pair = ModelPair.from_models(base, perturbed_copy(base, scale=1e-4), tiny_tokenizer)
    assert not pair.identical
    result = divergent.run(pair, load_probe_library(1), SETTINGS)
    assert result.words  # the statistic ran on real log ratios
    assert divergent.evidence(result).hypotheses == []
    same = ModelPair.from_models(base, copy.deepcopy(base), tiny_tokenizer)
    assert divergent.evidence(divergent.run(same, load_probe_library(1), SETTINGS)).hypotheses == []


def test_a_word_most_base_answers_say_is_scored_but_never_a_candidate(
    tiny_tokenizer: Any, tiny_model_factory: Callable[..., torch.nn.Module]
) -> None:
    """The same planted preference, the same fine-tuned answers: the word is a candidate when
    the base never says it, and not when every base answer does (a function word's case)."""
    pair = planted_pair(tiny_tokenizer, tiny_model_factory, " capital")
    probes = load_probe_library(1)
    ft = ["The capital is the capital of the old capital."] * len(probes)
    for base_word, candidate in (("city", True), ("capital", False)):
        base = [f"It is a {base_word} of note."] * len(probes)
        gens = {"finetuned": ft, "base": base}
        result = divergent.run(pair, probes, SETTINGS, generations=gens)
        scored = next(w for w in result.words if w.word.lower() == "capital")
        assert scored.base_share == (0.0 if candidate else 1.0)
        named = [k.lower() for h in divergent.evidence(result).hypotheses for k in h.keywords]
        assert ("capital" in named) is candidate, (base_word, result.words[:3])
