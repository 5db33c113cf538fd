"""The organism registry: where ``organism:NAME`` adapters come from.

Core code never imports the testbed. A package that ships model organisms declares a
provider in the ``auditlens.organisms`` entry-point group (auditlens' own testbed does, in
``pyproject.toml``); a provider is any object (a module will do) with
``organism_names() -> Sequence[str]`` and ``organism_adapter_dir(name) -> Path``.
:func:`register_provider` adds one at run time (tests, notebooks).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from auditlens.errors import AuditlensError

__all__ = [
    "ENTRY_POINT_GROUP",
    "PREFIX",
    "OrganismProvider",
    "organism_adapter_dir",
    "organism_names",
    "providers",
    "register_provider",
]

ENTRY_POINT_GROUP = "auditlens.organisms"
PREFIX = "organism:"


@runtime_checkable
class OrganismProvider(Protocol):
    """A source of named PEFT adapters (model organisms)."""

    def organism_names(self) -> Sequence[str]: ...

    def organism_adapter_dir(self, name: str) -> Path: ...


_registered: list[Any] = []
_loaded: list[Any] | None = None


def register_provider(provider: Any) -> None:
    """Add a provider (checked first, before the entry points)."""
    if not isinstance(provider, OrganismProvider):
        raise AuditlensError(
            f"{provider!r} is not an organism provider (needs organism_names and "
            "organism_adapter_dir)"
        )
    _registered.insert(0, provider)


def providers() -> list[Any]:
    """The registered providers, then those declared as entry points (loaded once)."""
    global _loaded
    if _loaded is None:
        found = []
        for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                found.append(entry.load())
            except Exception as err:  # a broken third-party provider must not break core
                raise AuditlensError(
                    f"organism provider {entry.name!r} ({entry.value}) failed to load: {err}"
                ) from err
        _loaded = found
    return [*_registered, *_loaded]


def organism_names() -> list[str]:
    """Every organism name any provider knows (built or not)."""
    names: list[str] = []
    for provider in providers():
        names += [n for n in provider.organism_names() if n not in names]
    return names


def organism_adapter_dir(name: str) -> Path:
    """The adapter folder of organism ``name`` (``organism:NAME`` without the prefix)."""
    name = name.removeprefix(PREFIX)
    found = providers()
    if not found:
        raise AuditlensError(
            f"no organism provider is installed, so organism:{name} cannot be resolved "
            f"(reinstall auditlens: its testbed registers the {ENTRY_POINT_GROUP!r} entry point)"
        )
    for provider in found:
        if name in provider.organism_names():
            return Path(provider.organism_adapter_dir(name))
    raise AuditlensError(
        f"unknown organism {name!r}; known organisms: {', '.join(organism_names()) or 'none'}"
    )
