"""auditlens.agent: the tools for auditing agents (MCP server, Inspect, scripted auditor).

:mod:`auditlens.agent.tools` (``Toolkit``, ``Limits``, ``TOOLS``; one module per method
family), :mod:`auditlens.agent.server` (``serve``, ``build_server``; run ``auditlens mcp``),
:mod:`auditlens.agent.scripted` (``run_scripted_audit``; run ``auditlens agent scripted``) and
:mod:`auditlens.agent.inspect_tools` (needs the ``inspect`` extra).
"""

from __future__ import annotations

from auditlens.agent.tools import TOOLS, Limits, Toolkit
from auditlens.agent.workspace import PathEscapeError, Workspace

__all__ = ["TOOLS", "Limits", "PathEscapeError", "Toolkit", "Workspace"]
