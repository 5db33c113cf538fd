"""The agent tools: one module per method family, each a thin layer over the methods.

:class:`Toolkit` holds a loaded pair, a workspace (paths are confined to it), limits, and the
audit budget, prompts and artifact cache whose settings the shared artifacts use. The MCP
server (:mod:`auditlens.agent.server`) and the Inspect adapters
(:mod:`auditlens.agent.inspect_tools`) wrap its methods; :data:`TOOLS` lists them.

- :mod:`.chat`: ``chat``, ``compare_models`` (black box, Bandit labels);
- :mod:`.diffing`: ``diff_overview``, ``top_divergent_tokens``, ``top_diff_latents``,
  ``latent_details`` (the audit's crosscoder);
- :mod:`.probes`: ``probe_score``;
- :mod:`.adversary`: ``steer_generate``, ``melbo_search``, ``fuzz``;
- :mod:`.audit`: ``run_audit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from auditlens.agent.tools._base import LimitError, Limits, ToolInputError, ToolSpec
from auditlens.agent.tools.adversary import SPECS as ADVERSARY
from auditlens.agent.tools.adversary import AdversaryTools
from auditlens.agent.tools.audit import SPECS as AUDIT
from auditlens.agent.tools.audit import AuditTools
from auditlens.agent.tools.chat import SPECS as CHAT
from auditlens.agent.tools.chat import ChatTools
from auditlens.agent.tools.diffing import SPECS as DIFFING
from auditlens.agent.tools.probes import SPECS as PROBES
from auditlens.agent.tools.probes import ProbeTools
from auditlens.agent.workspace import Workspace
from auditlens.audit.cache import ArtifactCache
from auditlens.audit.contract import Budget, resolve_budget
from auditlens.models import ModelPair

__all__ = ["TOOLS", "LimitError", "Limits", "ToolInputError", "ToolSpec", "Toolkit"]

TOOLS: tuple[ToolSpec, ...] = (*CHAT, *DIFFING, *PROBES, *ADVERSARY, *AUDIT)
"""Every agent tool, in the order a client lists them."""


class Toolkit(ChatTools, AdversaryTools, ProbeTools, AuditTools):
    """A loaded model pair, a workspace and limits: one method per agent tool."""

    @classmethod
    def create(
        cls,
        pair: ModelPair,
        workspace: str | Path | Workspace,
        limits: Limits | None = None,
        *,
        budget: str | Budget = "fast",
        prompts: str | Sequence[Any] = "generic_chat",
        cache: ArtifactCache | str | Path | None = None,
    ) -> Toolkit:
        """A toolkit whose shared artifacts match ``auditlens.audit(pair, budget=budget,
        prompts=prompts, cache=cache)``."""
        ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        store = cache if isinstance(cache, ArtifactCache) else ArtifactCache(cache)
        return cls(
            pair, ws, limits or Limits(), resolve_budget(budget), prompts=prompts, cache=store
        )
