"""Inspect AI adapters (the dev extras install the ``inspect`` extra; absence is simulated)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from auditlens.agent import schemas as s
from auditlens.agent.tools import TOOLS, Limits, Toolkit
from auditlens.errors import AuditlensError

HAVE_INSPECT = importlib.util.find_spec("inspect_ai") is not None


def test_missing_inspect_is_a_clear_error(
    tiny_pair: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from auditlens.agent.inspect_tools import inspect_tools

    monkeypatch.setitem(sys.modules, "inspect_ai.tool", None)  # as if the extra were missing
    with pytest.raises(AuditlensError, match=r"auditlens\[inspect\]"):
        inspect_tools(Toolkit.create(tiny_pair, tmp_path))


@pytest.mark.skipif(
    not HAVE_INSPECT, reason="needs the inspect extra: pip install auditlens[inspect]"
)
def test_inspect_tools_wrap_the_toolkit(tiny_pair: Any, tmp_path: Path) -> None:
    from inspect_ai.tool import ToolDef, ToolError

    from auditlens.agent.inspect_tools import inspect_tools

    toolkit = Toolkit.create(tiny_pair, tmp_path / "ws", Limits(max_new_tokens=8))
    tools = inspect_tools(toolkit)
    defs = {ToolDef(t).name: ToolDef(t) for t in tools}
    assert set(defs) == {t.name for t in TOOLS}
    chat = defs["chat"]
    assert chat.parameters.required == ["prompt"]
    assert chat.parameters.properties["side"].enum == ["base", "finetuned"]

    async def go() -> tuple[str, str]:
        out = await chat.tool(prompt="hello", max_new_tokens=3)
        overview = await defs["diff_overview"].tool(n_prompts=2)
        for bad in ({"prompt": "hi", "side": "bogus"}, {"prompt": "hi", "max_new_tokens": 99}):
            with pytest.raises(ToolError):
                await chat.tool(**bad)
        with pytest.raises(ToolError, match="outside the workspace"):
            await defs["compare_models"].tool(prompts_file="../../etc/passwd")
        return out, overview

    out, overview = anyio.run(go)
    s.ChatOutput.model_validate(json.loads(out))
    s.DiffOverviewOutput.model_validate(json.loads(overview))
    with pytest.raises(AuditlensError, match="unknown agent tools"):
        inspect_tools(toolkit, ["nope"])
