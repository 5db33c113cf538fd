"""Canonical TransformerLens-style activation sites and their HF module paths.

A site is ``blocks.{L}.hook_{resid_pre,resid_post,attn_out,mlp_out}``. The same names work
on every backend; this module maps them onto Llama-, Qwen2-, Gemma-, Mistral-, GPT-2- and
GPT-NeoX-style Hugging Face models.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from auditlens.errors import SiteError

__all__ = [
    "HOOKS",
    "ArchSpec",
    "Site",
    "arch_spec",
    "final_norm",
    "model_dims",
    "parse_site",
    "parse_sites",
    "resolve_module",
    "unwrap",
]

Hook = Literal["hook_resid_pre", "hook_attn_out", "hook_mlp_out", "hook_resid_post"]
# Execution order inside a block: the order in which a single forward pass reaches them.
HOOKS: tuple[Hook, ...] = ("hook_resid_pre", "hook_attn_out", "hook_mlp_out", "hook_resid_post")
_SITE_RE = re.compile(r"^blocks\.(-?\d+)\.(hook_\w+)$")


@dataclass(frozen=True)
class ArchSpec:
    """Where a model family keeps its blocks, attention, MLP, final norm and unembedding."""

    family: str
    layers: str
    attn: str
    mlp: str
    final_norm: str


_ARCHS: tuple[ArchSpec, ...] = (
    ArchSpec("llama", "model.layers", "self_attn", "mlp", "model.norm"),
    ArchSpec("gpt2", "transformer.h", "attn", "mlp", "transformer.ln_f"),
    ArchSpec("gpt_neox", "gpt_neox.layers", "attention", "mlp", "gpt_neox.final_layer_norm"),
)


@dataclass(frozen=True, order=True)
class Site:
    """One activation site; ordering follows the forward pass."""

    layer: int
    hook_index: int

    @property
    def hook(self) -> Hook:
        return HOOKS[self.hook_index]

    @property
    def name(self) -> str:
        return f"blocks.{self.layer}.{self.hook}"

    def __str__(self) -> str:
        return self.name


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _has(obj: Any, dotted: str) -> bool:
    try:
        _get(obj, dotted)
    except AttributeError:
        return False
    return True


def unwrap(model: nn.Module) -> Any:
    """The plain HF causal LM inside a PEFT or nnsight wrapper."""
    inner: Any = model
    for _ in range(4):
        if hasattr(inner, "get_base_model") and callable(inner.get_base_model):
            inner = inner.get_base_model()
        elif hasattr(inner, "_model") and isinstance(inner._model, nn.Module):
            inner = inner._model
        else:
            break
    return inner


def arch_spec(model: nn.Module) -> ArchSpec:
    """The layout of a supported architecture, found by probing module paths."""
    inner = unwrap(model)
    for spec in _ARCHS:
        if _has(inner, spec.layers) and _has(inner, spec.final_norm):
            block = _get(inner, spec.layers)[0]
            if hasattr(block, spec.attn) and hasattr(block, spec.mlp):
                return spec
    name = type(inner).__name__
    raise SiteError(
        f"unsupported architecture {name}: expected Llama/Qwen2/Gemma/Mistral-, GPT-2- or "
        "GPT-NeoX-style module paths"
    )


def model_dims(model: nn.Module) -> tuple[int, int]:
    """(number of layers, d_model) of a supported model."""
    inner = unwrap(model)
    spec = arch_spec(inner)
    n_layers = len(_get(inner, spec.layers))
    embed = inner.get_input_embeddings()
    return n_layers, int(embed.weight.shape[1])


def final_norm(model: nn.Module) -> nn.Module:
    """The final normalization before the unembedding (for the logit lens)."""
    inner = unwrap(model)
    return _get(inner, arch_spec(inner).final_norm)


def _valid_sites_message(n_layers: int) -> str:
    hooks = ",".join(h.removeprefix("hook_") for h in HOOKS)
    return (
        f"valid sites are blocks.{{0..{n_layers - 1}}}.hook_{{{hooks}}} "
        "(negative layers count from the end)"
    )


def parse_site(name: str | Site, n_layers: int) -> Site:
    """Parse and validate one canonical site name; ``-1`` is the last layer."""
    if isinstance(name, Site):
        if not 0 <= name.layer < n_layers:
            raise SiteError(f"site {name} is out of range; {_valid_sites_message(n_layers)}")
        return name
    match = _SITE_RE.match(name.strip())
    if match is None or match.group(2) not in HOOKS:
        raise SiteError(f"unknown site {name!r}; {_valid_sites_message(n_layers)}")
    layer = int(match.group(1))
    if layer < 0:
        layer += n_layers
    if not 0 <= layer < n_layers:
        raise SiteError(f"layer out of range in {name!r}; {_valid_sites_message(n_layers)}")
    return Site(layer, HOOKS.index(match.group(2)))  # type: ignore[arg-type]


def parse_sites(names: Iterable[str | Site] | str, n_layers: int) -> list[Site]:
    """Parse several sites (or a comma-separated string), deduplicated, in forward order."""
    items: Sequence[str | Site] = names.split(",") if isinstance(names, str) else list(names)
    sites = sorted({parse_site(n, n_layers) for n in items if str(n).strip()})
    if not sites:
        raise SiteError(f"no sites given; {_valid_sites_message(n_layers)}")
    return sites


def resolve_module(root: Any, spec: ArchSpec, site: Site) -> tuple[Any, str]:
    """The module (or nnsight envoy) to read for a site and whether to take its input or output."""
    block = _get(root, spec.layers)[site.layer]
    if site.hook == "hook_resid_pre":
        return block, "input"
    if site.hook == "hook_resid_post":
        return block, "output"
    if site.hook == "hook_attn_out":
        return getattr(block, spec.attn), "output"
    return getattr(block, spec.mlp), "output"
