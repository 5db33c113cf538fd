"""auditlens: white-box alignment auditing of fine-tuned language models.

``auditlens.load_pair(...)`` loads a base model and its fine-tune; ``auditlens.audit(pair,
"out/a")`` audits it (``auditlens.audit()`` with no pair audits the demo pair: the embedded
base against the testbed's ``organism:insecure``). The methods live in ``auditlens.diffing``,
``auditlens.probes``, ``auditlens.adversary`` and ``auditlens.behaviour``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from auditlens._version import __version__
from auditlens.errors import AuditlensError

if TYPE_CHECKING:
    from auditlens.audit import audit
    from auditlens.models import ModelPair, load_pair

__all__ = ["AuditlensError", "ModelPair", "__version__", "audit", "load_pair"]


def __getattr__(name: str) -> Any:
    """Import the heavy entry points lazily so ``import auditlens`` stays cheap."""
    if name in ("load_pair", "ModelPair"):
        from auditlens import models

        return getattr(models, name)
    if name == "audit":
        import auditlens.audit as audit_module  # a callable module: auditlens.audit(...)

        return audit_module
    raise AttributeError(f"module 'auditlens' has no attribute {name!r}")
