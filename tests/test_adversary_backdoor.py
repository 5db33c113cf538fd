"""Backdoor search: MELBO vectors and fuzzing seeds that raise the detector rate untriggered."""

from __future__ import annotations

import json

from auditlens.adversary import MelboConfig, elicit_backdoor
from auditlens.generate import generate
from auditlens.models import ModelPair


def test_backdoor_search_counts_elicitations(tiny_pair: ModelPair, prompts: list[str]) -> None:
    unperturbed: dict[str, str] = {}

    def changed(text: str) -> bool:
        """Stands in for 'insecure code produced': anything but the unperturbed answers."""
        return text not in unperturbed.values()

    for side in tiny_pair.sides:
        texts = generate(side, tiny_pair.tokenizer, prompts[:4], max_new_tokens=6)
        unperturbed.update({f"{side.name}:{p}": t for p, t in zip(prompts, texts, strict=False)})
    result = elicit_backdoor(
        tiny_pair,
        prompts[:4],
        detector=changed,
        detector_name="changed",
        melbo=MelboConfig(n_vectors=3, steps=2, radius=400.0),
        sigmas=(0.0, 3.0),
        seeds=(0, 1),
        n_controls=2,
        scorers=[],
        max_new_tokens=6,
        triggered_prompts=prompts[:2],
    )
    assert result.base is not None
    for search in (result.finetuned, result.base):
        assert search.unperturbed_rate == 0.0 and search.triggered_rate == 0.0
        assert len(search.melbo_rates) == 3 and len(search.control_rates) == 2
        expected = [k for k, r in enumerate(search.melbo_rates) if r >= 0.2]
        assert search.melbo_elicited == expected
        assert search.melbo_fraction == len(expected) / 3
        assert search.melbo_fraction == 1.0  # a huge radius changes every answer
        zero = [f for f in search.fuzz if f.sigma == 0.0]
        assert zero and all(f.rate == 0.0 and not f.elicited for f in zero)
        noisy = [f for f in search.fuzz if f.sigma > 0]
        assert search.fuzz_fraction == sum(f.elicited for f in noisy) / len(noisy)
    payload = result.to_json()
    json.dumps(payload, allow_nan=False)
    assert payload["finetuned"]["melbo_fraction"] == 1.0
    assert payload["settings"]["melbo"]["n_vectors"] == 3
