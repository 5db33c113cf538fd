"""auditlens.agent: the toolkit's tools for auditing agents (MCP server, Inspect, scripted).

Import the pieces from their modules: :mod:`auditlens.agent.tools` (``Toolkit``, ``Limits``,
``TOOLS``), :mod:`auditlens.agent.server` (``serve``, ``build_server``),
:mod:`auditlens.agent.scripted` (``run_scripted_audit``) and
:mod:`auditlens.agent.inspect_tools` (needs the ``inspect`` extra).
"""

from __future__ import annotations

from auditlens.agent.tools import TOOLS, Limits, Toolkit
from auditlens.agent.workspace import PathEscapeError, Workspace

__all__ = ["TOOLS", "Limits", "PathEscapeError", "Toolkit", "Workspace"]
