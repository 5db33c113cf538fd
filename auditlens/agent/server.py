"""The MCP server: every agent tool over stdio, built on the official ``mcp`` SDK (MCPServer).

Run it as ``auditlens mcp --workspace DIR [--base ...] [--finetuned DIR | --adapter DIR]``.
Tools take flat, typed arguments (from the input models in :mod:`auditlens.agent.schemas`) and
return structured output. Invalid arguments, exceeded limits and paths outside the workspace
come back as tool errors (``isError``); the server keeps serving.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

# nnsight 0.8 mounts ``save`` on ``object`` when imported, after which anyio refuses to define
# its TypedAttributeSet classes ("Attribute 'save' is missing its type annotation").
# auditlens.models.import_nnsight takes that patch off; loading anyio's lazily imported classes
# first also covers a process where other code imported nnsight with the patch on.
for _module in (
    "anyio._backends._asyncio",
    "anyio.abc._sockets",
    "anyio.streams.file",
    "anyio.streams.tls",
):
    importlib.import_module(_module)

import mcp.server.mcpserver  # noqa: E402
from mcp.server.mcpserver.exceptions import ToolError  # noqa: E402
from pydantic import BaseModel, Field, ValidationError  # noqa: E402

from auditlens._version import __version__  # noqa: E402
from auditlens.agent.schemas import clip  # noqa: E402
from auditlens.agent.tools import TOOLS, Limits, Toolkit, ToolSpec  # noqa: E402
from auditlens.agent.workspace import Workspace  # noqa: E402
from auditlens.errors import AuditlensError  # noqa: E402
from auditlens.models import load_pair  # noqa: E402

__all__ = ["build_server", "load_limits", "serve", "tool_function"]

logger = logging.getLogger("auditlens.agent")

INSTRUCTIONS = (
    "auditlens audits a fine-tuned model against its base. Start with diff_overview and "
    "compare_models, follow leads with top_divergent_tokens, top_diff_latents and "
    "latent_details, test hypotheses with steer_generate, melbo_search, fuzz and probe_score, "
    "and compare every signal with its null control. Paths are relative to the workspace. "
    "Tool calls are numbered c1, c2, ... in the order you make them; end with submit_answer "
    "(misaligned or not, up to 10 ranked guesses citing those ids, the trigger if any)."
)


def _validation_message(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:3]:
        loc = ".".join(str(x) for x in e["loc"]) or "arguments"
        parts.append(f"{loc}: {e['msg']}")
    return "invalid arguments: " + "; ".join(parts)


def tool_function(spec: ToolSpec, toolkit: Toolkit) -> Callable[..., BaseModel]:
    """A function with flat keyword arguments (one per input field) that runs one tool.

    Errors a caller can fix become :class:`mcp.server.mcpserver.exceptions.ToolError`.
    """
    method = spec.bind(toolkit)
    params = []
    for name, info in spec.input_model.model_fields.items():
        annotation: Any = Annotated[
            (info.annotation, *info.metadata, Field(description=info.description))
        ]  # type: ignore[valid-type]
        default = (
            inspect.Parameter.empty
            if info.is_required()
            else info.get_default(call_default_factory=True)
        )
        params.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
            )
        )

    def run(**kwargs: Any) -> BaseModel:
        try:
            args = spec.input_model.model_validate(kwargs)
            return method(args)
        except ValidationError as err:
            raise ToolError(clip(_validation_message(err))) from err
        except AuditlensError as err:
            raise ToolError(clip(str(err))) from err
        except Exception as err:  # a bug or a library failure: report it, keep serving
            logger.exception("tool %s failed", spec.name)
            raise ToolError(clip(f"{spec.name} failed: {type(err).__name__}: {err}")) from err

    run.__signature__ = inspect.Signature(params, return_annotation=spec.output_model)  # type: ignore[attr-defined]
    run.__name__ = spec.name
    run.__qualname__ = spec.name
    run.__doc__ = spec.description
    return run


def build_server(toolkit: Toolkit, *, name: str = "auditlens") -> Any:
    """An ``MCPServer`` with the toolkit's visible tools registered (every tool in
    :data:`auditlens.agent.tools.TOOLS` unless the toolkit has a subset); a call to a hidden
    tool is refused with a tool error that names the available ones."""
    server: Any = mcp.server.mcpserver.MCPServer(
        name, instructions=INSTRUCTIONS, version=__version__, log_level="WARNING"
    )
    visible = toolkit.visible()
    hidden = {t.name for t in TOOLS} - {t.name for t in visible}
    if hidden:
        listed = server.call_tool

        async def call_tool(name: str, arguments: dict[str, Any], *rest: Any) -> Any:
            if name in hidden:
                try:
                    toolkit.check_allowed(name)
                except AuditlensError as err:
                    raise ToolError(clip(str(err))) from err
            return await listed(name, arguments, *rest)

        server.call_tool = call_tool
    for spec in visible:
        server.add_tool(
            tool_function(spec, toolkit),
            name=spec.name,
            description=spec.description,
            structured_output=True,
        )
        _forbid_unknown_arguments(server, spec.name)
    return server


def _forbid_unknown_arguments(server: Any, name: str) -> None:
    """Make the SDK refuse arguments a tool does not have (it drops them silently otherwise),
    as the input models and the Inspect adapters do; the listed schema says so too."""
    tool = server._tool_manager.get_tool(name)  # the SDK has no public hook for this
    loose = tool.fn_metadata.arg_model
    config = {**loose.model_config, "extra": "forbid"}
    tool.fn_metadata.arg_model = type(loose.__name__, (loose,), {"model_config": config})
    tool.parameters["additionalProperties"] = False


def load_limits(path: str | Path | None, overrides: dict[str, Any] | None = None) -> Limits:
    """:class:`Limits` from defaults, an optional JSON file and explicit overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values.update(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as err:
            raise AuditlensError(f"cannot read limits file {path}: {err}") from err
    values.update(overrides or {})
    known = set(Limits.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise AuditlensError(f"unknown limits: {', '.join(unknown)}")
    if "audit_budgets" in values:
        values["audit_budgets"] = tuple(values["audit_budgets"])
    return Limits(**values)


def serve(
    base: str,
    finetuned: str | None,
    adapter: str | None,
    workspace: str | Path,
    device: str | None = None,
    dtype: str = "float32",
    limits: Limits | None = None,
    *,
    allow_download: bool = False,
    budget: str = "fast",
    prompts: str | Sequence[Any] = "generic_chat",
    tools: str | None = None,
    training_data: Sequence[tuple[str, str]] | None = None,
) -> None:
    """Load the pair, then serve the tools over stdio until the client disconnects.

    ``tools`` (families, e.g. ``"black-box,diffing"``) hides the other tools; ``training_data``
    ((user, assistant) turns) feeds the data-search tools.

    ``budget`` and ``prompts`` are the audit's: the tools' crosscoder, ADL and MELBO artifacts
    are the ones ``auditlens audit --budget BUDGET --prompts PROMPTS`` computes (shared cache).
    """
    import anyio

    os.environ["AUDITLENS_PROGRESS"] = "0"  # progress bars would write to stdout
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ws = Workspace(workspace)
    pair = load_pair(
        base, finetuned, adapter, device=device, dtype=dtype, allow_download=allow_download
    )
    toolkit = Toolkit.create(
        pair, ws, limits or Limits(), budget=budget, prompts=prompts, tools=tools,
        training_data=training_data,
    )  # fmt: skip
    anyio.run(build_server(toolkit).run_stdio_async)
