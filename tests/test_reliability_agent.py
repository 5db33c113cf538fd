"""Reliability of the agent tools: the in-process Inspect route of docs/agent.md runs end to end
(Inspect's mock model, offline) and every failure reaches the model as a tool error; the MCP
server refuses unknown arguments and never echoes a huge argument back."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from auditlens.agent.schemas import MAX_MESSAGE_CHARS, clip
from auditlens.agent.tools import Limits, Toolkit

HAVE_INSPECT = importlib.util.find_spec("inspect_ai") is not None
ROOT = Path(__file__).resolve().parents[1]

# The route of docs/agent.md, in a fresh process (nothing preloaded): load a pair (this imports
# nnsight), wrap the toolkit as Inspect tools, run react() with Inspect's mock model. One tool
# also fails with a plain ValueError, as a bug or a library error would.
INSPECT_SCRIPT = """
import json, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.conftest import build_tiny_tokenizer, make_tiny_model, perturbed_copy
from auditlens.models import ModelPair
tok = build_tiny_tokenizer(Path({tmp!r}) / "tok")
base = make_tiny_model("llama", len(tok))
pair = ModelPair.from_models(base, perturbed_copy(base), tok)  # imports nnsight
assert not hasattr(object, "save"), "nnsight's object.save patch is still mounted"

from inspect_ai import Task, eval as inspect_eval
from inspect_ai.agent import react
from inspect_ai.dataset import Sample
from inspect_ai.model import ModelOutput, ModelUsage, get_model
from auditlens.agent.inspect_tools import inspect_tools
from auditlens.agent.tools import Limits, Toolkit

toolkit = Toolkit.create(pair, Path({tmp!r}) / "ws", Limits(max_new_tokens=4))
def broken(args):
    raise ValueError("a library failed")
toolkit.probe_score = broken
tools = inspect_tools(toolkit)

def call(name, args):
    out = ModelOutput.for_tool_call("mockllm/model", name, args)
    out.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)  # no tiktoken
    return out

calls = [
    call("chat", {{"prompt": "hi", "max_new_tokens": 3}}),
    call("chat", {{"prompt": "hi", "seed": 2**70}}),
    call("chat", {{"prompt": "hi", "colour": "red"}}),
    call("probe_score", {{"texts": ["x"]}}),
    call("submit", {{"answer": "done"}}),
]
model = get_model("mockllm/model", custom_outputs=calls)
task = Task(dataset=[Sample(input="Audit the model.")], solver=react(tools=tools))
log = inspect_eval(task, model=model, display="none", log_dir=str(Path({tmp!r}) / "logs"))[0]
tool_messages = [
    {{"function": m.function, "text": m.text, "error": m.error.message if m.error else None}}
    for m in log.samples[0].messages if m.role == "tool"
]
print(json.dumps({{"status": log.status, "tools": tool_messages}}))
"""


@pytest.mark.skipif(
    not HAVE_INSPECT, reason="needs the inspect extra: pip install auditlens[inspect]"
)
def test_inspect_route_runs_end_to_end_and_errors_reach_the_model(tmp_path: Path) -> None:
    script = textwrap.dedent(INSPECT_SCRIPT).format(root=str(ROOT), tmp=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["status"] == "success"  # no tool failure ended the sample
    chat, big_seed, unknown, probe, *rest = record["tools"]
    assert chat["error"] is None and json.loads(chat["text"])["max_new_tokens"] == 3
    assert big_seed["error"] and "9223372036854775807" in big_seed["error"]  # the seed bound
    assert unknown["error"] and "colour" in unknown["error"]
    assert probe["error"] == "probe_score failed: ValueError: a library failed"
    assert [m["function"] for m in rest] in ([], ["submit"]), record


@pytest.mark.skipif(
    not HAVE_INSPECT, reason="needs the inspect extra: pip install auditlens[inspect]"
)
def test_inspect_tool_turns_any_exception_into_a_tool_error(tiny_pair: Any, tmp_path: Path) -> None:
    from inspect_ai.tool import ToolDef, ToolError

    from auditlens.agent.inspect_tools import inspect_tools

    toolkit = Toolkit.create(tiny_pair, tmp_path / "ws", Limits(max_new_tokens=4))

    def broken(args: Any) -> Any:
        raise RuntimeError("x" * 100_000)

    toolkit.chat = broken  # type: ignore[method-assign]
    chat = next(ToolDef(t) for t in inspect_tools(toolkit, ["chat"]))

    async def go() -> str:
        with pytest.raises(ToolError) as err:
            await chat.tool(prompt="hi")
        return str(err.value)

    message = anyio.run(go)
    assert message.startswith("chat failed: RuntimeError: xxx")
    assert len(message) < MAX_MESSAGE_CHARS + 60 and "more characters cut" in message


def _call(server: Any, name: str, args: dict[str, Any]) -> tuple[bool, str]:
    """(is_error, text) of one MCP tool call through the SDK's own call path."""
    from mcp.server.mcpserver.exceptions import ToolError

    async def go() -> tuple[bool, str]:
        try:
            result = await server.call_tool(name, args)
        except ToolError as err:
            return True, str(err)
        return bool(getattr(result, "is_error", False)), json.dumps(result.structured_content)

    return anyio.run(go)


def test_mcp_refuses_unknown_arguments_and_clips_refusals(tiny_pair: Any, tmp_path: Path) -> None:
    from auditlens.agent.server import build_server

    toolkit = Toolkit.create(tiny_pair, tmp_path / "ws", Limits(max_new_tokens=4, fuzz_max_seeds=2))
    server = build_server(toolkit)
    ok, text = _call(server, "chat", {"prompt": "hi", "max_new_tokens": 2})
    assert not ok and json.loads(text)["max_new_tokens"] == 2
    refused, text = _call(server, "chat", {"prompt": "hi", "colour": "red"})
    assert refused and "colour" in text and "Extra inputs are not permitted" in text
    tools = anyio.run(server.list_tools)
    assert all(t.input_schema.get("additionalProperties") is False for t in tools)
    huge = list(range(100_000))  # about 590 KB of JSON
    refused, text = _call(server, "fuzz", {"prompts": ["hi"], "seeds": huge})
    assert refused and "100000 items in seeds exceeds the server limit of 2" in text
    assert len(text) < 1000
    refused, text = _call(server, "chat", {"prompt": "hi", "seed": 2**70})
    assert refused and "seed" in text and len(text) < 2000


def test_clip_says_what_it_cut() -> None:
    assert clip("short") == "short"
    cut = clip("a" * 1000, 10)
    assert cut == "aaaaaaaaaa... (990 more characters cut)"
