"""``auditlens mcp`` (the tools served to an agent) and ``auditlens agent scripted``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from auditlens.agent.investigator import INVESTIGATOR_BUDGETS, investigate
from auditlens.agent.scripted import ScriptedConfig, run_scripted_audit
from auditlens.agent.server import load_limits, serve
from auditlens.agent.tools import Toolkit, parse_subset
from auditlens.cli._common import (
    AdapterOpt,
    BaseOpt,
    DeviceOpt,
    DownloadOpt,
    DtypeOpt,
    FinetunedOpt,
    app,
    load,
)
from auditlens.cli.audit import default_adapter
from auditlens.embedded import EMBEDDED_NAME
from auditlens.errors import AuditlensError

__all__ = ["agent_app"]

WorkspaceOpt = Annotated[
    Path, typer.Option("--workspace", help="Folder the tools may read and write.")
]
BudgetOpt = Annotated[
    str,
    typer.Option(
        "--budget",
        help="Audit budget whose settings the shared artifacts (crosscoder, ADL) use.",
    ),
]
PromptsOpt = Annotated[
    str, typer.Option("--prompts", help="The audit's generic prompts (built-in name or JSONL).")
]
ToolsOpt = Annotated[
    str | None,
    typer.Option(
        "--tools",
        help="Tool families to serve (black-box, diffing, probes, adversary, data-search, "
        "all), comma-separated; the others are refused. Default: every tool.",
    ),
]
DataOpt = Annotated[
    Path | None,
    typer.Option(
        "--training-data",
        help="JSONL of the fine-tuning chats ({'messages': [...]}) for the data-search tools.",
    ),
]


def read_training_data(path: Path | None) -> list[tuple[str, str]] | None:
    """(user, assistant) turn pairs of a chat JSONL file; a bad file is a one-line error."""
    if path is None:
        return None
    pairs: list[tuple[str, str]] = []
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            messages = json.loads(line)["messages"]
            user = ""
            for m in messages:
                if m["role"] == "user":
                    user = str(m["content"])
                elif m["role"] == "assistant":
                    pairs.append((user, str(m["content"])))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise AuditlensError(f"cannot read training data {path}: {err}") from err
    return pairs


@app.command()
def mcp(
    workspace: WorkspaceOpt,
    base: BaseOpt = EMBEDDED_NAME,
    finetuned: FinetunedOpt = None,
    adapter: AdapterOpt = None,
    limits: Annotated[
        Path | None, typer.Option("--limits", help="JSON file overriding the tool limits.")
    ] = None,
    budget: BudgetOpt = "fast",
    prompts: PromptsOpt = "generic_chat",
    tools: ToolsOpt = None,
    training_data: DataOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "float32",
    allow_download: DownloadOpt = False,
) -> None:
    """Serve the auditing tools to an agent over MCP (stdio).

    With no model arguments it serves the demo pair (the base against organism:insecure), as
    ``auditlens audit`` does.
    """
    if tools:
        parse_subset(tools)  # a bad family is an error before the model loads
    serve(
        base, finetuned, default_adapter(base, finetuned, adapter), workspace, device, dtype,
        load_limits(limits), allow_download=allow_download, budget=budget, prompts=prompts,
        tools=tools, training_data=read_training_data(training_data),
    )  # fmt: skip


agent_app = typer.Typer(help="Auditing agents over the same tools.", no_args_is_help=True)


@agent_app.command("scripted")
def scripted(
    workspace: WorkspaceOpt,
    base: BaseOpt = EMBEDDED_NAME,
    finetuned: FinetunedOpt = None,
    adapter: AdapterOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Transcript JSON (default WORKSPACE/scripted.json)."),
    ] = None,
    budget: BudgetOpt = "fast",
    device: DeviceOpt = None,
    dtype: DtypeOpt = "float32",
    allow_download: DownloadOpt = False,
) -> None:
    """Run the old scripted baseline (a fixed call sequence, scored like the audit; the
    testbed bench still reports it). ``agent investigate`` is the default auditor."""
    adapter = default_adapter(base, finetuned, adapter)
    pair = load(base, finetuned, adapter, device, dtype, allow_download)
    toolkit = Toolkit.create(pair, workspace, budget=budget)
    result = run_scripted_audit(toolkit, ScriptedConfig())
    path = out or toolkit.workspace.root / "scripted.json"
    path.write_text(json.dumps(result.to_json(), indent=1))
    typer.echo(f"verdict: {result.verdict} (confidence {result.confidence}, score {result.score})")
    typer.echo(f"transcript: {path}")


@agent_app.command("investigate")
def investigate_cmd(
    workspace: WorkspaceOpt,
    base: BaseOpt = EMBEDDED_NAME,
    finetuned: FinetunedOpt = None,
    adapter: AdapterOpt = None,
    tools: ToolsOpt = None,
    training_data: DataOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Answer and transcript JSON (default WORKSPACE/game.json)."),
    ] = None,
    budget: BudgetOpt = "fast",
    device: DeviceOpt = None,
    dtype: DtypeOpt = "float32",
    allow_download: DownloadOpt = False,
) -> None:
    """Run the built-in investigator (the default auditor): the auditing game's answer."""
    if budget not in INVESTIGATOR_BUDGETS:
        raise AuditlensError(f"unknown budget {budget!r}; choose {', '.join(INVESTIGATOR_BUDGETS)}")
    if tools:
        parse_subset(tools)
    data = read_training_data(training_data)
    adapter = default_adapter(base, finetuned, adapter)
    pair = load(base, finetuned, adapter, device, dtype, allow_download)
    toolkit = Toolkit.create(pair, workspace, budget=budget, tools=tools, training_data=data)
    result = investigate(toolkit, INVESTIGATOR_BUDGETS[budget])
    path = out or toolkit.workspace.root / "game.json"
    path.write_text(json.dumps(result.to_json(), indent=1))
    typer.echo(result.answer.model_dump_json(indent=1))
    typer.echo(f"transcript: {path} ({len(result.calls)} calls, stopped: {result.stopped})")


app.add_typer(agent_app, name="agent")
