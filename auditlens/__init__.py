"""auditlens: white-box alignment auditing of fine-tuned language models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from auditlens._version import __version__
from auditlens.errors import AuditlensError

if TYPE_CHECKING:
    from auditlens.models import ModelPair, load_pair
    from auditlens.pipeline import audit

__all__ = ["AuditlensError", "ModelPair", "__version__", "audit", "load_pair"]


def __getattr__(name: str) -> Any:
    """Import the heavy entry points lazily so ``import auditlens`` stays cheap."""
    if name in ("load_pair", "ModelPair"):
        from auditlens import models

        return getattr(models, name)
    if name == "audit":
        from auditlens.pipeline import audit

        return audit
    raise AttributeError(f"module 'auditlens' has no attribute {name!r}")
