"""Inspect AI adapters: the same toolkit methods as Inspect ``Tool`` objects.

Needs the ``inspect`` extra (``pip install 'auditlens[inspect]'``). Each tool takes the flat
arguments of its input model (the JSON schema is passed to Inspect as is) and returns its
output model as JSON text. Bad input and exceeded limits raise Inspect's ``ToolError``, which
Inspect reports to the model instead of ending the sample; so does any other failure (a bug or
a library error), named by its exception type. An Inspect task can also use the
MCP server directly with ``inspect_ai.tool.mcp_server_stdio`` (see docs/agent.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from auditlens.agent.schemas import clip
from auditlens.agent.tools import TOOLS, Toolkit, ToolSpec
from auditlens.errors import AuditlensError

__all__ = ["inspect_tool", "inspect_tools"]

logger = logging.getLogger("auditlens.agent")


def _inspect() -> Any:
    try:
        import inspect_ai.tool as inspect_tool_module
    except ImportError as err:
        raise AuditlensError(
            "the Inspect adapters need inspect-ai: pip install 'auditlens[inspect]'"
        ) from err
    return inspect_tool_module


def _params(spec: ToolSpec, tool_module: Any) -> Any:
    schema = spec.input_model.model_json_schema()
    properties = {
        name: tool_module.ToolParam.model_validate(prop)
        for name, prop in schema.get("properties", {}).items()
    }
    return tool_module.ToolParams(properties=properties, required=list(schema.get("required", [])))


def inspect_tool(spec: ToolSpec, toolkit: Toolkit) -> Any:
    """One agent tool as an Inspect ``Tool`` (runs the toolkit method in a worker thread)."""
    import anyio.to_thread

    tool_module = _inspect()
    method = spec.bind(toolkit)

    async def execute(**kwargs: Any) -> str:
        try:
            args = spec.input_model.model_validate(kwargs)
            result = await anyio.to_thread.run_sync(method, args)
        except ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(x) for x in first["loc"]) or "arguments"
            raise tool_module.ToolError(clip(f"invalid arguments: {loc}: {first['msg']}")) from err
        except AuditlensError as err:
            raise tool_module.ToolError(clip(str(err))) from err
        except Exception as err:  # a bug or a library failure: tell the model, keep the sample
            logger.exception("tool %s failed", spec.name)
            raise tool_module.ToolError(
                clip(f"{spec.name} failed: {type(err).__name__}: {err}")
            ) from err
        return result.model_dump_json()

    execute.__name__ = spec.name
    return tool_module.ToolDef(
        execute, name=spec.name, description=spec.description, parameters=_params(spec, tool_module)
    ).as_tool()


def inspect_tools(toolkit: Toolkit, names: Sequence[str] | None = None) -> list[Any]:
    """Inspect ``Tool`` objects for the toolkit's visible tools (or those in ``names``; a
    hidden one is still refused when called)."""
    wanted = set(names) if names is not None else None
    if wanted is not None:
        unknown = wanted - {t.name for t in TOOLS}
        if unknown:
            raise AuditlensError(f"unknown agent tools: {', '.join(sorted(unknown))}")
        specs: Sequence[ToolSpec] = [t for t in TOOLS if t.name in wanted]
    else:
        specs = toolkit.visible()
    return [inspect_tool(spec, toolkit) for spec in specs]
