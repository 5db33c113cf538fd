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
- :mod:`.hypotheses`: ``list_hypotheses``, ``test_hypothesis`` (the audit's discovery);
- :mod:`.audit`: ``run_audit``;
- :mod:`.blackbox`: ``target_chat``, ``sample_target``, ``target_words``, ``check_target``
  (the target only);
- :mod:`.data_search`: ``search_training_data``, ``training_data_words`` (the baseline);
- :mod:`.answer`: ``submit_answer`` (the auditing game's answer).

:mod:`.families` names the tool subsets (``black-box``, ``diffing``, ``probes``,
``adversary``, ``data-search``, ``all``); a toolkit created with ``tools=`` refuses the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from auditlens.agent.tools._base import (
    LimitError,
    Limits,
    ToolHiddenError,
    ToolInputError,
    ToolSpec,
)
from auditlens.agent.tools.adversary import SPECS as ADVERSARY
from auditlens.agent.tools.adversary import AdversaryTools
from auditlens.agent.tools.answer import SPECS as ANSWER
from auditlens.agent.tools.answer import AnswerTools
from auditlens.agent.tools.audit import SPECS as AUDIT
from auditlens.agent.tools.audit import AuditTools
from auditlens.agent.tools.blackbox import SPECS as BLACKBOX
from auditlens.agent.tools.blackbox import BlackBoxTools
from auditlens.agent.tools.chat import SPECS as CHAT
from auditlens.agent.tools.chat import ChatTools
from auditlens.agent.tools.data_search import SPECS as DATA_SEARCH
from auditlens.agent.tools.data_search import DataSearchTools
from auditlens.agent.tools.diffing import SPECS as DIFFING
from auditlens.agent.tools.families import FAMILIES, parse_subset, resolve_tools
from auditlens.agent.tools.hypotheses import SPECS as HYPOTHESES
from auditlens.agent.tools.hypotheses import HypothesisTools
from auditlens.agent.tools.probes import SPECS as PROBES
from auditlens.agent.tools.probes import ProbeTools
from auditlens.agent.workspace import Workspace
from auditlens.audit.cache import ArtifactCache
from auditlens.audit.contract import Budget, resolve_budget
from auditlens.models import ModelPair

__all__ = [
    "FAMILIES",
    "TOOLS",
    "LimitError",
    "Limits",
    "ToolHiddenError",
    "ToolInputError",
    "ToolSpec",
    "Toolkit",
    "parse_subset",
    "resolve_tools",
]

TOOLS: tuple[ToolSpec, ...] = (
    *CHAT, *DIFFING, *HYPOTHESES, *PROBES, *ADVERSARY, *AUDIT, *BLACKBOX, *DATA_SEARCH, *ANSWER,
)  # fmt: skip
"""Every agent tool, in the order a client lists them."""


class Toolkit(
    ChatTools, AdversaryTools, HypothesisTools, ProbeTools, AuditTools, BlackBoxTools,
    DataSearchTools, AnswerTools,
):  # fmt: skip
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
        tools: str | Sequence[str] | None = None,
        training_data: Sequence[tuple[str, str]] | None = None,
    ) -> Toolkit:
        """A toolkit whose shared artifacts match ``auditlens.audit(pair, budget=budget,
        prompts=prompts, cache=cache)``; ``tools`` (families, e.g. ``"black-box,diffing"``)
        hides every other tool; ``training_data`` feeds the data-search baseline."""
        ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        store = cache if isinstance(cache, ArtifactCache) else ArtifactCache(cache)
        return cls(
            pair, ws, limits or Limits(), resolve_budget(budget), prompts=prompts, cache=store,
            allowed=resolve_tools(tools),
            training_data=None if training_data is None else tuple(training_data),
        )  # fmt: skip

    def visible(self) -> tuple[ToolSpec, ...]:
        """The tools this session lists (its subset, plus ``submit_answer``)."""
        return tuple(
            t for t in TOOLS
            if self.allowed is None or t.name in self.allowed or t.name == "submit_answer"
        )  # fmt: skip
