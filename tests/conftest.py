"""Shared fixtures: a tiny in-memory tokenizer and tiny random-init models (no downloads)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

os.environ.setdefault("AUDITLENS_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_CORPUS = [
    "hello world, how are you today?",
    "def add(a, b):\n    return a + b\n",
    "The quick brown fox jumps over the lazy dog.",
    "import os\nos.system(cmd)\nsubprocess.run(args, shell=True)",
    "What is the capital of France? Paris is the capital.",
    "SELECT * FROM users WHERE name = ?",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(autouse=True, scope="session")
def _private_artifact_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Shared artifacts (crosscoders, ADL, MELBO) go to a per-session folder, not ~/.cache."""
    old = os.environ.get("AUDITLENS_ARTIFACTS")
    os.environ["AUDITLENS_ARTIFACTS"] = str(tmp_path_factory.mktemp("artifacts"))
    yield
    if old is None:
        os.environ.pop("AUDITLENS_ARTIFACTS", None)
    else:
        os.environ["AUDITLENS_ARTIFACTS"] = old


@pytest.fixture(autouse=True)
def _one_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tiny models gain nothing from threads, and on a loaded 2-core box each op then waits.

    Tests on the embedded model (marked ``slow``) keep the default thread count.
    """
    if request.node.get_closest_marker("slow") is not None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build_tiny_tokenizer(directory: Path, vocab_size: int = 320) -> Any:
    """A byte-level BPE tokenizer trained in memory, saved and reloaded like a real one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|pad|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(directory)
    return AutoTokenizer.from_pretrained(directory)


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tok"))


def tiny_config(arch: str, vocab_size: int, n_layers: int = 3, d_model: int = 32) -> Any:
    """A tiny random-init config for one architecture family."""
    import transformers as tf

    common = {"vocab_size": vocab_size}
    if arch == "llama":
        return tf.LlamaConfig(
            hidden_size=d_model,
            intermediate_size=2 * d_model,
            num_hidden_layers=n_layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            **common,
        )
    if arch == "qwen2":
        return tf.Qwen2Config(
            hidden_size=d_model,
            intermediate_size=2 * d_model,
            num_hidden_layers=n_layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            **common,
        )
    if arch == "gemma":
        return tf.GemmaConfig(
            hidden_size=d_model,
            intermediate_size=2 * d_model,
            num_hidden_layers=n_layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=256,
            **common,
        )
    if arch == "gpt2":
        return tf.GPT2Config(n_embd=d_model, n_layer=n_layers, n_head=4, n_positions=256, **common)
    if arch == "gpt_neox":
        return tf.GPTNeoXConfig(
            hidden_size=d_model,
            intermediate_size=2 * d_model,
            num_hidden_layers=n_layers,
            num_attention_heads=4,
            max_position_embeddings=256,
            **common,
        )
    raise ValueError(arch)


def make_tiny_model(arch: str, vocab_size: int, seed: int = 0, **kw: Any) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config(arch, vocab_size, **kw)).eval()


@pytest.fixture
def tiny_model_factory(tiny_tokenizer: Any) -> Callable[..., torch.nn.Module]:
    def make(arch: str = "llama", seed: int = 0, **kw: Any) -> torch.nn.Module:
        return make_tiny_model(arch, len(tiny_tokenizer), seed=seed, **kw)

    return make


def perturbed_copy(model: torch.nn.Module, scale: float = 0.05, seed: int = 1) -> torch.nn.Module:
    """A "fine-tuned" copy: the same architecture with small random weight changes."""
    import copy

    ft = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ft.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale * p.std().clamp_min(1e-3))
    return ft


@pytest.fixture
def tiny_pair(tiny_tokenizer: Any, tiny_model_factory: Callable[..., torch.nn.Module]) -> Any:
    from auditlens.models import ModelPair

    base = tiny_model_factory("llama")
    return ModelPair.from_models(base, perturbed_copy(base), tiny_tokenizer)


PROMPTS = [
    "hello world",
    "def add(a, b): return a + b",
    "What is the capital of France?",
    "The quick brown fox",
    "import os; os.system(cmd)",
    "how are you today?",
    "SELECT * FROM users",
    "jumps over the lazy dog",
    "Paris is the capital",
    "return a + b",
    "hello again world",
]


@pytest.fixture
def prompts() -> list[str]:
    return list(PROMPTS)
