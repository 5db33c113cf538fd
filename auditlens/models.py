"""Model pairs: a base model and a fine-tuned model that share one tokenizer.

``load_pair`` loads the embedded default, a Hugging Face id or a local folder, and either a
second full model or a PEFT adapter. With an adapter the pair holds one copy of the base
weights and switches the adapter on and off. A model larger than one device loads with
accelerate's ``device_map="auto"`` (spread over the GPUs, then CPU memory).

Two sides are "the same model" when their :attr:`ModelSide.fingerprint` (weights hash, plus
the adapter hash when the adapter is on) is equal: that is the one test for a base-vs-base
pair, whatever objects hold the weights.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from auditlens.embedded import EMBEDDED_NAME, embedded_model_dir
from auditlens.errors import AuditlensError, PairMismatchError
from auditlens.hashing import sha256_files, sha256_json, state_dict_sha256
from auditlens.registry import PREFIX as ORGANISM_PREFIX
from auditlens.registry import organism_adapter_dir
from auditlens.sites import ArchSpec, Site, arch_spec, model_dims, parse_sites, unwrap

__all__ = [
    "ModelPair",
    "ModelSide",
    "load_model",
    "load_pair",
    "resolve_adapter",
    "resolve_model_path",
]

logger = logging.getLogger(__name__)
SideName = Literal["base", "finetuned"]
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise AuditlensError(f"unknown dtype {dtype!r}; choose one of {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_model_path(spec: str, *, allow_download: bool = False) -> Path:
    """A local folder for a model spec: the embedded name, a folder, or a cached HF id."""
    if spec == EMBEDDED_NAME:
        return embedded_model_dir()
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if path.suffix or spec.startswith((".", "/", "~")):
        raise AuditlensError(f"model folder {spec!r} does not exist")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        return Path(snapshot_download(spec, local_files_only=offline or not allow_download))
    except (LocalEntryNotFoundError, HFValidationError, OSError) as err:
        hint = "" if allow_download else "; pass allow_download=True (CLI: --allow-download)"
        raise AuditlensError(
            f"model {spec!r} is not a local folder or in the Hugging Face cache{hint}"
        ) from err


def load_model(
    spec: str,
    *,
    device: str | None = None,
    dtype: str | torch.dtype = "float32",
    device_map: str | dict[str, Any] | None = None,
    allow_download: bool = False,
) -> tuple[nn.Module, Any, str]:
    """Load a causal LM and its tokenizer from local files; returns (model, tokenizer, sha256)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(spec, allow_download=allow_download)
    kwargs: dict[str, Any] = {"dtype": _torch_dtype(dtype)}
    if device_map is not None:
        kwargs["device_map"] = device_map
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model: Any = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise AuditlensError(f"cannot load model from {path}: {err}".splitlines()[0]) from err
    if device_map is None:
        model.to(device or _default_device())
    model.eval()
    weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
    digest = sha256_files(weights) if weights else state_dict_sha256(model)
    return model, tokenizer, digest


@dataclass
class ModelSide:
    """One side of a pair: a model, and for adapter pairs the adapter state it needs."""

    name: SideName
    label: str
    module: nn.Module
    sha256: str
    adapter_enabled: bool | None = None
    adapter: str | None = None
    adapter_sha256: str | None = None
    _lm: Any = field(default=None, repr=False)

    @contextmanager
    def active(self) -> Iterator[nn.Module]:
        """Put a shared adapter model in this side's state (adapter on or off)."""
        if self.adapter_enabled is None or self.adapter_enabled:
            yield self.module
            return
        with self.module.disable_adapter():  # type: ignore[operator]
            yield self.module

    @property
    def fingerprint(self) -> str:
        """The sha256 of this side's effective weights: the model, plus the adapter if on."""
        if self.adapter_enabled and self.adapter_sha256:
            return sha256_json({"model": self.sha256, "adapter": self.adapter_sha256})
        return self.sha256

    @property
    def hf(self) -> Any:
        """The plain HF causal LM (LoRA layers injected in place for adapter pairs)."""
        return unwrap(self.module)

    @property
    def lm(self) -> Any:
        """An nnsight ``LanguageModel`` around :attr:`hf` (shared between adapter sides)."""
        return self._lm


@dataclass
class ModelPair:
    """A base and a fine-tuned model with one tokenizer, validated to be comparable."""

    base: ModelSide
    finetuned: ModelSide
    tokenizer: Any
    arch: ArchSpec
    n_layers: int
    d_model: int
    notices: list[str] = field(default_factory=list)

    @property
    def device(self) -> torch.device:
        return next(self.base.hf.parameters()).device

    @property
    def sides(self) -> tuple[ModelSide, ModelSide]:
        return self.base, self.finetuned

    @property
    def identical(self) -> bool:
        """Whether both sides have the same effective weights (a base-vs-base null control).

        Compared by :attr:`ModelSide.fingerprint`, not by object identity: a copy of the base
        is the base, and an adapter that is switched on is not.
        """
        return self.base.fingerprint == self.finetuned.fingerprint

    @property
    def fingerprint(self) -> str:
        """The sha256 of both sides' fingerprints (a cache key for anything the pair computes)."""
        return sha256_json([self.base.fingerprint, self.finetuned.fingerprint])

    def sites(self, names: Any) -> list[Site]:
        """Parse site names against this pair's depth (unknown names list the valid ones)."""
        return parse_sites(names, self.n_layers)

    @classmethod
    def from_models(
        cls,
        base: nn.Module,
        finetuned: nn.Module | None,
        tokenizer: Any,
        *,
        finetuned_tokenizer: Any = None,
        base_label: str = "base",
        finetuned_label: str = "finetuned",
    ) -> ModelPair:
        """Build a pair from in-memory models (tests, notebooks)."""
        ft = base if finetuned is None else finetuned
        base_side = ModelSide("base", base_label, base, state_dict_sha256(base))
        ft_hash = base_side.sha256 if ft is base else state_dict_sha256(ft)
        ft_side = ModelSide("finetuned", finetuned_label, ft, ft_hash)
        return _assemble(base_side, ft_side, tokenizer, finetuned_tokenizer)

    def __repr__(self) -> str:
        return (
            f"ModelPair(base={self.base.label!r}, finetuned={self.finetuned.label!r}, "
            f"arch={self.arch.family}, layers={self.n_layers}, d_model={self.d_model})"
        )


def _tokenizers_match(a: Any, b: Any) -> str | None:
    if len(a) != len(b):
        return f"vocabulary sizes differ ({len(a)} vs {len(b)})"
    if a.get_vocab() != b.get_vocab():
        return "vocabularies differ (same size, different token ids)"
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(a, attr, None) != getattr(b, attr, None):
            return f"tokenizers differ in {attr}"
    return None


def _wrap_nnsight(module: nn.Module, tokenizer: Any) -> Any:
    from nnsight.modeling.transformers import TransformersModel

    return TransformersModel(unwrap(module), task="text-generation", tokenizer=tokenizer)


def _assemble(
    base: ModelSide,
    ft: ModelSide,
    tokenizer: Any,
    ft_tokenizer: Any,
) -> ModelPair:
    if ft_tokenizer is not None and ft_tokenizer is not tokenizer:
        problem = _tokenizers_match(tokenizer, ft_tokenizer)
        if problem:
            raise PairMismatchError(f"base and fine-tuned tokenizers differ: {problem}")
    spec_b, spec_f = arch_spec(base.module), arch_spec(ft.module)
    if spec_b.family != spec_f.family:
        raise PairMismatchError(
            f"architectures differ: base is {spec_b.family}-style, "
            f"fine-tuned is {spec_f.family}-style"
        )
    (lb, db), (lf, df) = model_dims(base.module), model_dims(ft.module)
    if lb != lf:
        raise PairMismatchError(f"layer counts differ: base has {lb}, fine-tuned has {lf}")
    if db != df:
        raise PairMismatchError(f"d_model differs: base has {db}, fine-tuned has {df}")
    vb = unwrap(base.module).get_output_embeddings().weight.shape[0]
    vf = unwrap(ft.module).get_output_embeddings().weight.shape[0]
    if vb != vf:
        raise PairMismatchError(f"vocabulary sizes differ: base has {vb}, fine-tuned has {vf}")
    if getattr(tokenizer, "pad_token_id", None) is None:
        tokenizer.pad_token = tokenizer.eos_token
    base._lm = _wrap_nnsight(base.module, tokenizer)
    ft._lm = base._lm if ft.module is base.module else _wrap_nnsight(ft.module, tokenizer)
    pair = ModelPair(base, ft, tokenizer, spec_b, lb, db)
    if pair.identical:
        pair.notices.append(
            "The fine-tuned side is the base model itself: this audit is a base-vs-base null "
            "control, and every difference it reports is noise."
        )
    return pair


def load_pair(
    base: str = EMBEDDED_NAME,
    finetuned: str | None = None,
    adapter: str | None = None,
    *,
    device: str | None = None,
    dtype: str | torch.dtype = "float32",
    device_map: str | dict[str, Any] | None = None,
    allow_download: bool = False,
) -> ModelPair:
    """Load a base model and its fine-tuned counterpart (a full model or a PEFT adapter).

    With neither ``finetuned`` nor ``adapter`` the pair is base vs base, a null control.
    ``adapter`` also accepts ``organism:NAME`` for the testbed's shipped organisms (resolved
    through :mod:`auditlens.registry`). ``device_map="auto"`` spreads a model that does not
    fit one device over several (accelerate); ``device`` is then ignored.
    """
    if finetuned is not None and adapter is not None:
        raise AuditlensError("give either finetuned= or adapter=, not both")
    opts: dict[str, Any] = {
        "device": device,
        "dtype": dtype,
        "device_map": device_map,
        "allow_download": allow_download,
    }
    base_model, tokenizer, base_hash = load_model(base, **opts)
    base_side = ModelSide("base", base, base_model, base_hash)
    ft_tokenizer = None
    if adapter is not None:
        adapter_dir = resolve_adapter(adapter)
        peft_model = _apply_adapter(base_model, adapter_dir)
        adapter_hash = sha256_files(sorted(adapter_dir.glob("adapter_model*")))
        base_side = ModelSide("base", base, peft_model, base_hash, adapter_enabled=False)
        ft_side = ModelSide(
            "finetuned",
            f"{base}+{adapter}",
            peft_model,
            base_hash,
            adapter_enabled=True,
            adapter=str(adapter),
            adapter_sha256=adapter_hash,
        )
    elif finetuned is None or finetuned == base:
        ft_side = ModelSide("finetuned", base, base_model, base_hash)
    else:
        ft_model, ft_tokenizer, ft_hash = load_model(finetuned, **opts)
        ft_side = ModelSide("finetuned", finetuned, ft_model, ft_hash)
    return _assemble(base_side, ft_side, tokenizer, ft_tokenizer)


def resolve_adapter(spec: str | Path) -> Path:
    """A PEFT adapter folder from a path or ``organism:NAME``."""
    text = str(spec)
    if text.startswith(ORGANISM_PREFIX):
        return organism_adapter_dir(text)
    path = Path(text).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise AuditlensError(f"{text!r} is not a PEFT adapter folder (no adapter_config.json)")
    return path


def _apply_adapter(model: nn.Module, adapter_dir: Path) -> nn.Module:
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False).eval()
    except (ValueError, KeyError, RuntimeError, OSError) as err:
        raise PairMismatchError(
            f"adapter {adapter_dir} does not fit the base model: {err}".splitlines()[0]
        ) from err
