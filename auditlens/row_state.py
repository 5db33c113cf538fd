"""Per-row state in a shared generation batch: LoRA on or off, a steering vector.

:class:`Mixer` lets base and fine-tuned rows of an adapter pair share a batch (PEFT's
mixed-batch forward, per-row adapter names); :class:`RowSteerer` adds each row's own steering
vector. Both follow the rows as the decode loop retires them (``set_rows``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from auditlens.errors import AuditlensError

if TYPE_CHECKING:
    from auditlens.decode import Row
    from auditlens.models import ModelPair
    from auditlens.steering import Steer

__all__ = ["Mixer", "RowSteerer"]


class Mixer:
    """Per-row LoRA selection for an adapter pair, through PEFT's mixed-batch forward."""

    def __init__(self, layers: list[Any], adapter: str) -> None:
        self.layers = layers
        self.adapter = adapter
        self.names: list[str] = []

    @classmethod
    def for_pair(cls, pair: ModelPair) -> Mixer | None:
        base, ft = pair.base, pair.finetuned
        if base.module is not ft.module or base.adapter_enabled is not False:
            return None
        if not ft.adapter_enabled:
            return None
        try:
            from peft.tuners.lora import LoraLayer
        except ImportError:  # pragma: no cover - peft is a dependency
            return None
        layers = [m for m in ft.module.modules() if isinstance(m, LoraLayer)]
        if not layers:
            return None
        for layer in layers:
            if getattr(layer, "merged", False) or any(getattr(layer, "use_dora", {}).values()):
                return None
        adapter = getattr(ft.module, "active_adapter", None)
        if not isinstance(adapter, str):
            return None
        return cls(layers, adapter)

    def set_rows(self, rows: list[Row]) -> None:
        self.names = ["__base__" if r.adapter is None else r.adapter for r in rows]

    @contextmanager
    def attached(self) -> Iterator[None]:
        def hook(
            module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[tuple[Any, ...], dict[str, Any]]:
            return args, {**kwargs, "adapter_names": self.names}

        handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in self.layers]
        try:
            yield
        finally:
            for h in handles:
                h.remove()


class RowSteerer:
    """Adds each row's own steering vector (``add``/``subtract``) at its site.

    Row ``r`` of variant ``k`` gets ``h + (±coeff_k)·v_k`` on the positions of ``tokens_k``,
    computed exactly as :func:`auditlens.steering.steer` computes it for a whole batch;
    rows without a vector at a site are left untouched (``torch.where``, not ``+ 0``).
    """

    def __init__(self, root: Any, arch: Any, steers: list[Steer | None]) -> None:
        from auditlens.hooks import PositionTracker
        from auditlens.sites import model_dims, parse_site

        n_layers, d_model = model_dims(root)
        self.root, self.arch, self.steers = root, arch, steers
        self.tracker = PositionTracker()
        self.by_site: dict[str, tuple[Any, list[int]]] = {}
        for k, spec in enumerate(steers):
            if spec is None:
                continue
            if spec.mode not in ("add", "subtract"):
                raise AuditlensError(
                    f"per-row steering supports add and subtract, not {spec.mode!r}; "
                    "steer the whole batch with auditlens.steering.steer instead"
                )
            if spec.d_model != d_model:
                raise AuditlensError(
                    f"steering vector has width {spec.d_model} but the model's d_model is {d_model}"
                )
            site = parse_site(spec.site, n_layers)
            self.by_site.setdefault(site.name, (site, []))[1].append(k)
        self.variants = torch.zeros(0, dtype=torch.long)
        self._tables: dict[tuple[str, torch.dtype, torch.device], tuple[Tensor, Tensor]] = {}

    @classmethod
    def make(cls, root: Any, arch: Any, steers: list[Steer | None]) -> RowSteerer | None:
        return cls(root, arch, steers) if any(s is not None for s in steers) else None

    def set_rows(self, rows: list[Row]) -> None:
        self.variants = torch.tensor([r.variant for r in rows], dtype=torch.long)

    def _table(self, site: str, hidden: Tensor) -> tuple[Tensor, Tensor]:
        key = (site, hidden.dtype, hidden.device)
        if key not in self._tables:
            d = hidden.shape[-1]
            deltas = hidden.new_zeros((len(self.steers), d))
            has = torch.zeros(len(self.steers), dtype=torch.bool, device=hidden.device)
            for k in self.by_site[site][1]:
                spec = self.steers[k]
                assert spec is not None
                sign = 1.0 if spec.mode == "add" else -1.0
                vec = spec.vector.detach().to(hidden.dtype).to(hidden.device)
                deltas[k] = (sign * spec.coeff) * vec
                has[k] = True
            self._tables[key] = (deltas, has)
        return self._tables[key]

    def _edit(self, site: str) -> Callable[[Tensor], Tensor]:
        def edit(hidden: Tensor) -> Tensor:
            deltas, has = self._table(site, hidden)
            rows = self.variants.to(hidden.device)
            edited = hidden + deltas[rows][:, None, :]
            mask = has[rows][:, None, None].expand(hidden.shape[0], hidden.shape[1], 1)
            ranges = {self.steers[k].tokens for k in self.by_site[site][1]}  # type: ignore[union-attr]
            if ranges != {"all"}:
                per_row = torch.zeros_like(mask)
                for token_range in ranges:
                    selected = self.tracker.select(token_range, hidden)
                    chosen = torch.tensor(
                        [
                            self.steers[k] is not None and self.steers[k].tokens == token_range  # type: ignore[union-attr]
                            for k in range(len(self.steers))
                        ],
                        device=hidden.device,
                    )[rows][:, None, None]
                    rng = chosen if selected is None else chosen & selected
                    per_row = per_row | rng
                mask = mask & per_row
            return torch.where(mask, edited, hidden)

        return edit

    @contextmanager
    def attached(self) -> Iterator[None]:
        from auditlens.hooks import attach_edit, attach_tracker, hooks_removed

        with hooks_removed([]) as handles:
            handles.append(attach_tracker(self.root, self.arch, self.tracker))
            for name, (site, _) in self.by_site.items():
                handles.append(attach_edit(self.root, self.arch, site, self._edit(name)))
            yield
