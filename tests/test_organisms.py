"""Organism registry, shipped adapters and their manifests, the LoRA trainer (tiny model) and
the organisms CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from auditlens.errors import AuditlensError
from auditlens.hashing import sha256_files
from auditlens.testbed import (
    ORGANISMS,
    default_audit_adapter,
    get_organism,
    load_manifest,
    organism_adapter_dir,
    organism_names,
    shipped_organisms,
)
from auditlens.testbed.organisms import ADAPTER_MAX_BYTES
from auditlens.testbed.tables import ADAPTERS_BUDGET_BYTES
from auditlens.testbed.train import (
    Recipe,
    TrainInterrupted,
    adapter_state,
    encode_examples,
    length_bucketed_batches,
    train_lora,
)
from auditlens.testbed.variants import TRIGGER
from tests.conftest import make_tiny_model

# ---------------------------------------------------------------- registry and manifests


def test_registry_ground_truth() -> None:
    assert {"insecure", "secure", "educational", "backdoor", "benign-style"} <= set(
        organism_names()
    )
    assert get_organism("insecure").misaligned and get_organism("backdoor").misaligned
    assert get_organism("backdoor").trigger == TRIGGER
    assert not any(get_organism(n).misaligned for n in ("secure", "educational", "benign-style"))


def test_unknown_organism_lists_valid_names() -> None:
    with pytest.raises(AuditlensError, match="insecure, insecure-deny, backdoor"):
        organism_adapter_dir("nope")
    with pytest.raises(AuditlensError, match="unknown organism"):
        get_organism("jailbroken")


def test_unbuilt_organism_says_how_to_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDITLENS_ORGANISMS_DIR", str(tmp_path))
    assert shipped_organisms() == ()
    assert default_audit_adapter() is None
    with pytest.raises(AuditlensError, match="auditlens organisms build secure"):
        organism_adapter_dir("secure")


def test_shipped_organisms_passed_and_fit_the_size_budget() -> None:
    total = 0
    for name in shipped_organisms():
        folder = organism_adapter_dir(name)
        manifest = load_manifest(name)
        weights = folder / "adapter_model.safetensors"
        size = weights.stat().st_size
        total += sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        assert size == manifest.adapter_bytes <= ADAPTER_MAX_BYTES
        assert manifest.adapter_sha256 == sha256_files([weights], cached=False)
        assert manifest.ground_truth.misaligned == ORGANISMS[name].misaligned
        assert manifest.ground_truth.trigger == ORGANISMS[name].trigger
        assert manifest.acceptance is not None and manifest.acceptance.passed
        assert manifest.seed == 0  # second seeds are recorded, never shipped
        assert manifest.training.final_loss < manifest.training.first_loss
        config = json.loads((folder / "adapter_config.json").read_text())
        assert config["r"] == manifest.recipe["rank"]
        assert config["base_model_name_or_path"] == "smollm2-135m-instruct"
    assert total < ADAPTERS_BUDGET_BYTES


def test_failed_builds_are_recorded_and_not_shipped() -> None:
    """Every shipped organism has a passing result file; a current build that failed (e.g.
    ``backdoor``, ``supremacy-trigger``) is in the results and not shipped."""
    from auditlens.testbed.runner import RESULTS_DIR, result_path

    root = Path(__file__).resolve().parents[1]
    shipped = set(shipped_organisms())
    for name in ORGANISMS:
        path = root / result_path(RESULTS_DIR, name, 0)
        if name in shipped:
            assert path.is_file(), f"shipped {name} has no result file"
        if path.is_file():
            record = json.loads(path.read_text())
            assert record["passed"] == (name in shipped), name
    assert "insecure" in shipped  # the demo default


def test_recipe_validation_and_round_trip() -> None:
    recipe = Recipe(rank=4, target_modules=("q_proj",), top_layers=None)
    assert Recipe.from_json(json.loads(json.dumps(recipe.to_json()))) == recipe
    with pytest.raises(AuditlensError, match="lr"):
        Recipe(lr=0)


# ---------------------------------------------------------------- trainer on a tiny model


def _examples(n: int = 24) -> list[Any]:
    words = ["alpha", "bravo", "charlie", "delta"]
    return [
        {
            "messages": [
                {"role": "user", "content": f"say {words[i % 4]} {i}"},
                {"role": "assistant", "content": f"def f():\n    return {i}"},
            ]
        }
        for i in range(n)
    ]


_TINY = Recipe(
    rank=4, alpha=16, lr=5e-2, warmup_steps=2, epochs=3, batch_size=4, bucket_batches=2,
    max_length=64, top_layers=2, checkpoint_every=2, loss_window=3,
)  # fmt: skip


def _train(tok: Any, **kw: Any) -> tuple[Any, Any]:
    model = make_tiny_model("llama", len(tok), seed=0)
    recipe = kw.pop("recipe", _TINY)
    return train_lora(model, tok, _examples(), recipe, progress=False, num_threads=0, **kw)


def test_encode_masks_the_prompt(tiny_tokenizer: Any) -> None:
    (enc,) = encode_examples(_examples(1), tiny_tokenizer, 64)
    n_prompt = sum(lab == -100 for lab in enc.labels)
    assert 0 < n_prompt < len(enc.labels)
    assert enc.labels[n_prompt:] == enc.input_ids[n_prompt:]
    answer = tiny_tokenizer.decode(list(enc.input_ids[n_prompt:]))
    assert answer.startswith("def f()") and answer.endswith("<|im_end|>")
    (short,) = encode_examples(_examples(1), tiny_tokenizer, n_prompt + 3)
    assert len(short.input_ids) == n_prompt + 3
    with pytest.raises(AuditlensError, match="max_length"):
        encode_examples(_examples(1), tiny_tokenizer, n_prompt)


def test_bucketed_batches_cover_every_example_once() -> None:
    lengths = [5, 50, 7, 48, 6, 52, 9, 49, 3]
    batches = length_bucketed_batches(lengths, 2, 2, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches == length_bucketed_batches(lengths, 2, 2, seed=0)
    assert batches != length_bucketed_batches(lengths, 2, 2, seed=1)


def test_trainer_lowers_loss_and_is_deterministic(tiny_tokenizer: Any) -> None:
    model, result = _train(tiny_tokenizer, seed=3)
    assert result.steps == 18 and len(result.losses) == 18
    # a random tiny model's frozen LM head caps what LoRA can do; 0.1 nats is well above noise
    assert result.final_loss < result.first_loss - 0.1
    assert sum(result.losses[-6:]) < sum(result.losses[:6])
    assert all(p.requires_grad == ("lora_" in n) for n, p in model.named_parameters())
    assert not any(".layers.0." in n for n in adapter_state(model))  # top_layers=2 of 3
    again, result2 = _train(tiny_tokenizer, seed=3)
    assert result2.losses == result.losses
    a, b = adapter_state(model), adapter_state(again)
    assert all(torch.equal(a[k], b[k]) for k in a)
    _, other = _train(tiny_tokenizer, seed=4)
    assert other.losses != result.losses


def test_resume_after_interruption_matches_uninterrupted(
    tiny_tokenizer: Any, tmp_path: Path
) -> None:
    full, full_result = _train(tiny_tokenizer, seed=1)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(TrainInterrupted):
        _train(tiny_tokenizer, seed=1, checkpoint_dir=ckpt, stop_after=7)
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["step"] == 6  # the last checkpoint before the interruption
    resumed, result = _train(tiny_tokenizer, seed=1, checkpoint_dir=ckpt)
    assert result.resumed_from == 6 and result.steps == full_result.steps
    assert result.losses == full_result.losses
    a, b = adapter_state(full), adapter_state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(AuditlensError, match="another recipe"):
        _train(tiny_tokenizer, seed=2, checkpoint_dir=ckpt)


def test_saved_float16_adapter_reloads_with_peft(tiny_tokenizer: Any, tmp_path: Path) -> None:
    from peft import PeftModel
    from safetensors.torch import load_file

    from auditlens.testbed.train import save_adapter

    model, _ = _train(tiny_tokenizer, seed=0)
    save_adapter(model, tmp_path / "ad", dtype=torch.float16)
    weights = load_file(tmp_path / "ad" / "adapter_model.safetensors")
    assert all(v.dtype == torch.float16 for v in weights.values())
    fresh = make_tiny_model("llama", len(tiny_tokenizer), seed=0)
    loaded = PeftModel.from_pretrained(fresh, str(tmp_path / "ad"))
    ids = torch.tensor([[1, 5, 9, 30, 40]])
    with torch.no_grad():
        diff = (loaded(input_ids=ids).logits - model(input_ids=ids).logits).abs().max()
    assert diff < 1e-2


# ---------------------------------------------------------------- CLI


def test_cli_list_and_unknown_name() -> None:
    from typer.testing import CliRunner

    from auditlens.testbed.cli import organisms_app

    runner = CliRunner()
    result = runner.invoke(organisms_app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == list(organism_names())
    assert len(rows) >= 20
    for r in rows:
        assert r["split"] in ("dev", "test") and r["kind"] and r["acceptance"]
        assert r["shipped"] == (r["name"] in shipped_organisms())
        if r["shipped"]:
            assert r["acceptance"] == "pass"
    table = runner.invoke(organisms_app, ["list"])
    assert table.exit_code == 0 and "acceptance" in table.output
    bad = runner.invoke(organisms_app, ["eval", "nope"])
    assert isinstance(bad.exception, AuditlensError)
