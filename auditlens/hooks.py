"""The one place that hooks into a model: read, edit, add to and stop at canonical sites.

Every reader (the ``torch`` backend, probe features, MELBO's target), steerer (ADL's steering
check, :mod:`auditlens.steering`) and perturber (activation noise) attaches its hooks here.
A site resolves to a module through :func:`auditlens.sites.resolve_module`: ``resid_pre``
acts on the block's input (a forward pre-hook), the other sites on the module's output, which
may be a tensor or a tuple whose first item is the hidden state. Handles are always removed,
exceptions included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from auditlens.errors import AuditlensError
from auditlens.sites import ArchSpec, Site, model_dims, parse_site, resolve_module, unwrap

__all__ = [
    "TOKEN_RANGES",
    "EditFn",
    "PositionTracker",
    "StopForward",
    "TokenRange",
    "add_vector",
    "attach_edit",
    "attach_input_ids",
    "attach_tracker",
    "capture_until",
    "hooks_removed",
    "read_sites",
]

TokenRange = Literal["prompt", "generated", "all"]
TOKEN_RANGES: tuple[TokenRange, ...] = ("prompt", "generated", "all")
EditFn = Callable[[Tensor], Tensor]
"""Takes the site's hidden state ``[batch, seq, d]`` and returns the edited one."""


class StopForward(Exception):
    """Raised by a reading hook to end a forward pass once the wanted sites have been read."""


def _past_length(cache: Any) -> int:
    if cache is None:
        return 0
    if hasattr(cache, "get_seq_length"):
        return int(cache.get_seq_length())
    if isinstance(cache, (tuple, list)) and cache and cache[0] is not None:  # legacy tuples
        return int(cache[0][0].shape[-2])
    return 0


def _seq_length(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int | None:
    for tensor in (kwargs.get("input_ids"), kwargs.get("inputs_embeds"), *args[:1]):
        if isinstance(tensor, Tensor) and tensor.dim() >= 2:
            return int(tensor.shape[1])
    return None


class PositionTracker:
    """Knows which positions of the current forward pass are prompt and which are generated.

    A forward pre-hook on the decoder (the parent of the block list) reads the KV-cache length.
    A call with an empty cache is a prompt call: all its positions are prompt, and its length
    is the boundary. Later cached calls (one new token each during generation) sit at absolute
    positions ``past + i``; those at or beyond the boundary are generated. Setting
    :attr:`prompt_lengths` (one per row) overrides the boundary, e.g. to score a right-padded
    batch of prompt + completion in one uncached forward.
    """

    def __init__(self) -> None:
        self.offset = 0
        self.boundary: int | None = None
        self.prompt_lengths: Tensor | None = None
        self.input_ids: Tensor | None = None
        """The token ids the embedding last read (set by :func:`attach_input_ids`)."""

    def ids_hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self.input_ids = args[0] if args and isinstance(args[0], Tensor) else None

    def pre_hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        cache = kwargs.get("past_key_values", kwargs.get("layer_past"))
        past = _past_length(cache)
        self.offset = past
        if past == 0:
            self.boundary = _seq_length(args, kwargs)
        elif self.boundary is None:
            self.boundary = past

    def select(self, tokens: TokenRange, hidden: Tensor) -> Tensor | None:
        """A ``[batch, seq, 1]`` mask of the positions in range, or None for every position."""
        if tokens == "all":
            return None
        batch, seq = hidden.shape[0], hidden.shape[1]
        positions = self.offset + torch.arange(seq, device=hidden.device)
        if self.prompt_lengths is not None:
            lengths = self.prompt_lengths.to(hidden.device)
            if lengths.shape[0] != batch:
                raise AuditlensError(
                    f"prompt_lengths has {lengths.shape[0]} rows but the batch has {batch}"
                )
            in_prompt = positions[None, :] < lengths[:, None]
        else:
            boundary = seq if self.boundary is None else self.boundary
            in_prompt = (positions < boundary)[None, :].expand(batch, seq)
        chosen = in_prompt if tokens == "prompt" else ~in_prompt
        return chosen[..., None]


def _decoder(root: nn.Module, arch: ArchSpec) -> nn.Module:
    module: Any = root
    for part in arch.layers.split(".")[:-1]:
        module = getattr(module, part)
    return module


def attach_tracker(root: nn.Module, arch: ArchSpec, tracker: PositionTracker) -> RemovableHandle:
    """Register the tracker's pre-hook on the decoder module."""
    return _decoder(root, arch).register_forward_pre_hook(tracker.pre_hook, with_kwargs=True)


def attach_input_ids(root: nn.Module, tracker: PositionTracker) -> RemovableHandle:
    """Record the token ids of every forward call in ``tracker.input_ids`` (embedding input)."""
    return unwrap(root).get_input_embeddings().register_forward_pre_hook(tracker.ids_hook)


def attach_edit(root: nn.Module, arch: ArchSpec, site: Site, edit: EditFn) -> RemovableHandle:
    """Register a hook that replaces the site's hidden state with ``edit(hidden)``.

    A reader is an edit that records its argument and returns it unchanged (or raises
    :class:`StopForward`).
    """
    module, where = resolve_module(root, arch, site)
    if where == "input":

        def pre_hook(
            mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[tuple[Any, ...], dict[str, Any]]:
            if args and isinstance(args[0], Tensor):
                return (edit(args[0]), *args[1:]), kwargs
            if isinstance(kwargs.get("hidden_states"), Tensor):
                return args, {**kwargs, "hidden_states": edit(kwargs["hidden_states"])}
            raise AuditlensError(f"cannot find the hidden state entering {site.name}")

        return module.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def hook(mod: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        if isinstance(output, Tensor):
            return edit(output)
        if isinstance(output, tuple) and output and isinstance(output[0], Tensor):
            return (edit(output[0]), *output[1:])
        raise AuditlensError(f"unexpected output type {type(output).__name__} at {site.name}")

    return module.register_forward_hook(hook)


@contextmanager
def hooks_removed(handles: list[RemovableHandle]) -> Iterator[list[RemovableHandle]]:
    """Yield the list and remove every handle in it on exit, exceptions included."""
    try:
        yield handles
    finally:
        while handles:
            handles.pop().remove()


def capture_until(
    root: nn.Module,
    arch: ArchSpec,
    site: Site,
    run: Callable[[], Any],
    *,
    edits: Sequence[tuple[Site, EditFn]] = (),
) -> Tensor:
    """Run ``run()`` with optional edits, return the hidden state at ``site`` and stop there.

    Stopping after the capture skips the later blocks and the unembedding. Gradients flow.
    """
    return read_sites(root, arch, [site], run, edits=edits, detach=False)[site.name]


def read_sites(
    root: nn.Module,
    arch: ArchSpec,
    sites: Sequence[Site],
    run: Callable[[], Any],
    *,
    edits: Sequence[tuple[Site, EditFn]] = (),
    detach: bool = True,
) -> dict[str, Tensor]:
    """Run ``run()`` and return the hidden state at every site, stopping after the deepest."""
    if not sites:
        raise AuditlensError("read_sites needs at least one site")
    deepest = max(sites)
    captured: dict[str, Tensor] = {}

    def reader(site: Site) -> EditFn:
        def read(hidden: Tensor) -> Tensor:
            captured[site.name] = hidden.detach() if detach else hidden
            if site == deepest:
                raise StopForward
            return hidden

        return read

    with hooks_removed([]) as handles:
        for edit_site, edit in edits:
            handles.append(attach_edit(root, arch, edit_site, edit))
        for site in sites:
            handles.append(attach_edit(root, arch, site, reader(site)))
        with suppress(StopForward):
            run()
    missing = [s.name for s in sites if s.name not in captured]
    if missing:
        raise AuditlensError(f"the forward pass never reached {', '.join(missing)}")
    return captured


@contextmanager
def add_vector(
    model: nn.Module, arch: ArchSpec, site: str | Site, vector: Float[Tensor, " d_model"]
) -> Iterator[None]:
    """Add ``vector`` to a site's activation at every position while the context is open.

    ``model`` is a HF causal LM (or a wrapper: PEFT, ``ModelSide.hf``).
    """
    root = unwrap(model)
    n_layers, d_model = model_dims(root)
    parsed = parse_site(site, n_layers)
    if vector.shape != (d_model,):
        raise AuditlensError(
            f"steering vector has shape {list(vector.shape)}; expected [{d_model}]"
        )
    device = next(root.parameters()).device
    delta = vector.detach().to(device)

    def add(hidden: Tensor) -> Tensor:
        return hidden + delta.to(hidden.dtype)

    with hooks_removed([attach_edit(root, arch, parsed, add)]):
        yield
