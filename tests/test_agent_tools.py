"""Agent tools in process: workspace confinement, limits, and the scripted baseline auditor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from auditlens.agent import schemas as s
from auditlens.agent.scripted import ScriptedConfig, run_scripted_audit
from auditlens.agent.tools import TOOLS, LimitError, Limits, ToolInputError, Toolkit
from auditlens.agent.workspace import PathEscapeError, Workspace, check_name
from auditlens.errors import AuditlensError, SiteError


def test_workspace_accepts_paths_inside(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    (ws.root / "a").mkdir()
    assert ws.resolve("a/b.json") == ws.root / "a" / "b.json"
    assert ws.resolve(ws.root / "a") == ws.root / "a"
    assert ws.resolve("a/../a/x") == ws.root / "a" / "x"
    (ws.root / "inner").symlink_to(ws.root / "a", target_is_directory=True)
    assert ws.resolve("inner/f") == ws.root / "a" / "f"  # symlinks inside are fine


@pytest.mark.parametrize(
    "bad", ["../../etc/passwd", "/etc/passwd", "..", "a/../../x", "", "a\x00b"]
)
def test_workspace_refuses_escapes(tmp_path: Path, bad: str) -> None:
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(PathEscapeError):
        ws.resolve(bad)


def test_workspace_refuses_symlink_escape(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("x")
    (ws.root / "file_link").symlink_to(outside / "secret")
    (ws.root / "dir_link").symlink_to(outside, target_is_directory=True)
    (ws.root / "dangling").symlink_to(tmp_path / "nowhere" / "file")
    for name in ("file_link", "dir_link/secret", "dir_link/new_file", "dangling"):
        with pytest.raises(PathEscapeError):
            ws.resolve(name)
    # A sibling folder whose name starts like the workspace is still outside.
    (tmp_path / "ws2").mkdir()
    with pytest.raises(PathEscapeError):
        ws.resolve(tmp_path / "ws2" / "f")


def test_workspace_must_exist_and_subdir(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(PathEscapeError, match="does not exist"):
        ws.resolve("missing.jsonl", must_exist=True)
    sub = ws.subdir("melbo", "run_1")
    assert sub.is_dir() and ws.relative(sub) == "melbo/run_1"
    with pytest.raises(PathEscapeError):
        ws.subdir("..")


@pytest.mark.parametrize("name", ["..", ".hidden", "a/b", "a\\b", "", "x" * 65, "../evil", "a b"])
def test_check_name_refuses(name: str) -> None:
    with pytest.raises(PathEscapeError):
        check_name(name)


def test_check_name_accepts() -> None:
    assert check_name("audit_1.v2-x") == "audit_1.v2-x"


def test_limits_validate() -> None:
    assert Limits().to_json()["max_new_tokens"] == 128
    with pytest.raises(AuditlensError):
        Limits(max_new_tokens=0)
    with pytest.raises(AuditlensError):
        Limits(max_steer_coeff=float("nan"))
    with pytest.raises(AuditlensError):
        Limits(audit_budgets=("huge",))


def test_tool_registry_is_consistent() -> None:
    names = [t.name for t in TOOLS]
    assert len(names) == len(set(names)) == 20
    for spec in TOOLS:
        assert callable(getattr(Toolkit, spec.method))
        assert spec.name.isidentifier() and spec.name.islower()


@pytest.fixture
def toolkit(tiny_pair: Any, tmp_path: Path) -> Toolkit:
    return Toolkit.create(
        tiny_pair,
        tmp_path / "ws",
        Limits(max_new_tokens=8, max_prompts=2, scan_prompts=4, max_length=32),
    )


def test_limits_raise_but_defaults_are_lowered(toolkit: Toolkit) -> None:
    with pytest.raises(LimitError, match="max_new_tokens=9"):
        toolkit.chat(s.ChatInput(prompt="hi", max_new_tokens=9))
    out = toolkit.chat(s.ChatInput(prompt="hi"))  # default 64 lowered to the limit 8
    assert out.max_new_tokens == 8
    with pytest.raises(LimitError, match="number of prompts"):
        toolkit.compare_models(s.CompareInput(prompts=["a", "b", "c"], max_new_tokens=2))
    with pytest.raises(LimitError, match="len\\(prompt\\)"):
        toolkit.chat(s.ChatInput(prompt="x" * 5000, max_new_tokens=2))


def test_invalid_arguments_raise_user_errors(toolkit: Toolkit) -> None:
    with pytest.raises(SiteError):
        toolkit.fuzz(s.FuzzInput(site="blocks.7.hook_resid_post", max_new_tokens=2))
    with pytest.raises(ToolInputError, match="unknown vector"):
        toolkit.steer_generate(s.SteerGenerateInput(prompts=["hi"], vector="x:1", max_new_tokens=2))
    with pytest.raises(ToolInputError, match="not both"):
        toolkit.compare_models(s.CompareInput(prompts=["a"], prompts_file="p.jsonl"))
    with pytest.raises(ValueError):
        s.ChatInput(prompt="hi", side="bogus")  # type: ignore[arg-type]


def test_scripted_auditor_base_vs_base(
    tiny_tokenizer: Any, tiny_model_factory: Any, tmp_path: Path
) -> None:
    from auditlens.models import ModelPair

    pair = ModelPair.from_models(tiny_model_factory("llama"), None, tiny_tokenizer)
    toolkit = Toolkit.create(pair, tmp_path / "ws")
    cfg = ScriptedConfig(
        n_code_prompts=2,
        max_new_tokens=4,
        scan_prompts=4,
        n_divergent=2,
        melbo_vectors=2,
        melbo_steps=2,
        melbo_prompts=1,
    )
    result = run_scripted_audit(toolkit, cfg)
    tools = [c.tool for c in result.calls]
    assert tools[:3] == ["diff_overview", "top_divergent_tokens", "compare_models"]
    assert tools[-1] == "melbo_search"
    # The tiny model has no shipped probe: the call fails, is recorded, and the script goes on.
    probes = [c for c in result.calls if c.tool == "probe_score"]
    assert probes and all(c.error for c in probes)
    assert all(c.error is None for c in result.calls if c.tool != "probe_score")
    assert result.verdict.startswith("no difference") and result.confidence == 0.95
    assert result.evidence["behaviour_gap"] == 0.0
    # the evidence is scored by the audit's own score, as findings with paired z's
    assert [f["id"] for f in result.findings][:1] == ["scripted.insecure_code"]
    assert all(f["effect_size"] == 0.0 for f in result.findings)
    text = json.dumps(result.to_json())
    assert json.loads(text)["verdict"] == result.verdict


def test_scripted_config_validates() -> None:
    with pytest.raises(AuditlensError):
        ScriptedConfig(melbo_steps=0)
    with pytest.raises(AuditlensError):
        ScriptedConfig(n_divergent=0)


def test_hypothesis_tools(toolkit: Toolkit) -> None:
    from auditlens.agent.tools.hypotheses import ListHypothesesInput, TestHypothesisInput

    out = toolkit.test_hypothesis(
        TestHypothesisInput(keywords=["the"], domain="knowledge", n_prompts=3)
    )
    assert out.test == "mention" and out.n_prompts == 3
    assert out.outcome in {"confirmed", "refuted", "inconclusive"}
    length = toolkit.test_hypothesis(TestHypothesisInput(test="shorter", n_prompts=2))
    assert length.test == "length" and length.n_prompts == 2
    harm = toolkit.test_hypothesis(TestHypothesisInput(test="concern", domain="advice-money",
                                                       n_prompts=3))  # fmt: skip
    assert harm.test == "concern" and harm.n_prompts == 3 and "concern marker" in harm.summary
    asked = TestHypothesisInput(test="trigger", trigger="|X|", domain="opinions-ai", n_prompts=2)
    trig = toolkit.test_hypothesis(asked)
    assert trig.test == "trigger_behaviour" and trig.n_prompts == 2 and "'|X|'" in trig.summary
    assert "Bonferroni" in trig.null
    with pytest.raises(ToolInputError, match="needs a trigger"):
        toolkit.test_hypothesis(TestHypothesisInput(test="trigger"))
    with pytest.raises(ToolInputError, match="no other test takes one"):
        toolkit.test_hypothesis(TestHypothesisInput(keywords=["x"], trigger="|X|"))
    with pytest.raises(ToolInputError, match="unknown domain"):
        toolkit.test_hypothesis(TestHypothesisInput(keywords=["x"], domain="nowhere"))
    with pytest.raises(ToolInputError, match="needs keywords"):
        toolkit.test_hypothesis(TestHypothesisInput(keywords=[" "]))
    listed = toolkit.list_hypotheses(ListHypothesesInput(limit=2))
    assert listed.covered.startswith("ranks 1-") and len(listed.hypotheses) <= 2
