"""A small steering-vector type and a forward-hook context that adds a vector at a site.

:class:`SteeringVector` is what diffing methods export (the ADL vector); the adversary
package consumes it through ``.site`` and ``.vector``. :func:`add_vector` is a plain torch
forward hook on the module behind a canonical site, removed in a ``finally``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from auditlens.errors import AuditlensError
from auditlens.sites import ArchSpec, Site, model_dims, parse_site, resolve_module, unwrap

__all__ = ["SteeringVector", "add_vector"]


@dataclass(frozen=True, eq=False)
class SteeringVector:
    """A direction to add at a site, with its norm and where it came from."""

    site: str
    """Canonical site name, e.g. ``blocks.15.hook_resid_post``."""
    vector: Float[Tensor, " d_model"]
    """The vector added at every position (raw activation units)."""
    provenance: dict[str, Any] = field(default_factory=dict)
    """Method, models, prompt set and settings that produced it."""
    name: str = "steering"
    """Short label for tables."""
    kind: str = "steering"
    """Perturbation family, e.g. ``adl`` or ``random_control``."""
    coeff: float = 1.0
    """Multiplier applied when steering."""

    def __post_init__(self) -> None:
        if not isinstance(self.vector, Tensor) or self.vector.dim() != 1:
            raise AuditlensError("a steering vector must be a 1-D tensor [d_model]")
        if not torch.isfinite(self.vector).all():
            raise AuditlensError("a steering vector must be finite")

    @property
    def norm(self) -> float:
        """``||vector||₂`` (before ``coeff``)."""
        return float(self.vector.detach().float().norm())

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "norm": self.norm,
            "d_model": int(self.vector.numel()),
            "name": self.name,
            "kind": self.kind,
            "coeff": self.coeff,
            "provenance": self.provenance,
        }

    def save(self, directory: str | Path) -> Path:
        """``steering_vector.safetensors`` + ``steering_vector.json``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        save_file(
            {"vector": self.vector.detach().cpu().contiguous()},
            str(out / "steering_vector.safetensors"),
        )
        (out / "steering_vector.json").write_text(json.dumps(self.to_json(), indent=1))
        return out

    @classmethod
    def load(cls, directory: str | Path) -> SteeringVector:
        path = Path(directory)
        try:
            meta = json.loads((path / "steering_vector.json").read_text())
            vector = load_file(str(path / "steering_vector.safetensors"))["vector"]
        except (OSError, KeyError, ValueError) as err:
            raise AuditlensError(f"{path} holds no readable steering vector: {err}") from err
        return cls(
            meta["site"], vector, meta.get("provenance", {}), meta.get("name", "steering"),
            meta.get("kind", "steering"), float(meta.get("coeff", 1.0)),
        )  # fmt: skip


def _add(value: Any, delta: Tensor) -> Any:
    if isinstance(value, tuple):
        return (value[0] + delta.to(value[0].dtype), *value[1:])
    return value + delta.to(value.dtype)


@contextmanager
def add_vector(
    model: nn.Module, arch: ArchSpec, site: str | Site, vector: Float[Tensor, " d_model"]
) -> Iterator[None]:
    """Add ``vector`` to a site's activation at every position while the context is open.

    ``model`` is a HF causal LM (or a wrapper: PEFT, ``ModelSide.hf``); the hook is removed
    in a ``finally`` even if the forward pass raises.
    """
    root = unwrap(model)
    n_layers, d_model = model_dims(root)
    parsed = parse_site(site, n_layers)
    if vector.shape != (d_model,):
        raise AuditlensError(
            f"steering vector has shape {list(vector.shape)}; expected [{d_model}]"
        )
    module, which = resolve_module(root, arch, parsed)
    device = next(root.parameters()).device
    delta = vector.detach().to(device)
    if which == "input":

        def pre_hook(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if args:
                return (_add(args[0], delta), *args[1:]), kwargs
            key = "hidden_states"
            return args, {**kwargs, key: _add(kwargs[key], delta)}

        handle = module.register_forward_pre_hook(pre_hook, with_kwargs=True)
    else:

        def hook(mod: nn.Module, args: Any, output: Any) -> Any:
            return _add(output, delta)

        handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
