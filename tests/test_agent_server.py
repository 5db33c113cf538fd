"""The MCP server as a subprocess on tiny models, driven through the SDK's stdio client."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import torch
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

# Importing the server loads the SDK (and anyio's lazy classes) before anything imports nnsight.
from auditlens.agent.server import build_server
from auditlens.agent.tools import TOOLS
from tests.conftest import build_tiny_tokenizer, make_tiny_model, perturbed_copy

SPECS = {spec.name: spec for spec in TOOLS}
LIMITS = {
    "max_new_tokens": 16,
    "max_prompts": 3,
    "scan_prompts": 8,
    "max_length": 48,
    "kl_top_k": 40,
    "melbo_max_vectors": 3,
    "melbo_max_steps": 5,
    "max_stored_vectors": 4,
    "fuzz_max_seeds": 2,
    "page_size": 10,
}

# (label, tool, arguments): every tool once, with small settings.
GOOD_CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("chat", "chat", {"prompt": "hello", "max_new_tokens": 4}),
    (
        "chat_base_prefill",
        "chat",
        {
            "prompt": "hi",
            "side": "base",
            "system": "Be brief.",
            "prefill": "Sure",
            "max_new_tokens": 4,
            "temperature": 0.7,
            "seed": 3,
        },
    ),
    ("compare_models", "compare_models", {"prompts": ["hello", "def f():"], "max_new_tokens": 4}),
    (
        "compare_models_file",
        "compare_models",
        {"prompts_file": "prompts.jsonl", "max_new_tokens": 4},
    ),
    ("diff_overview", "diff_overview", {"n_prompts": 4}),
    ("top_divergent_tokens", "top_divergent_tokens", {"n_prompts": 4, "offset": 2, "limit": 3}),
    ("top_diff_latents", "top_diff_latents", {"limit": 5}),
    ("top_diff_latents_freq", "top_diff_latents", {"limit": 3, "offset": 3, "order": "frequency"}),
    ("latent_details", "latent_details", {"latent": 1, "n_contexts": 3, "n_tokens": 4}),
    ("probe_score", "probe_score", {"texts": ["import os\nos.system(cmd)", "hello"]}),
    (
        "steer_latent",
        "steer_generate",
        {"prompts": ["hi"], "vector": "latent:0", "coeff": 2.0, "max_new_tokens": 4},
    ),
    (
        "steer_mean_diff",
        "steer_generate",
        {"prompts": ["hi"], "vector": "mean_diff:blocks.1.hook_resid_post", "max_new_tokens": 4},
    ),
    (
        "steer_file",
        "steer_generate",
        {
            "prompts": ["hi"],
            "vector": "file:vectors/v.safetensors",
            "site": "blocks.0.hook_resid_post",
            "relative": False,
            "coeff": 1.0,
            "max_new_tokens": 4,
        },
    ),
    (
        "melbo_search",
        "melbo_search",
        {
            "prompts": ["hi", "def f():"],
            "n_vectors": 2,
            "steps": 3,
            "max_new_tokens": 4,
            "name": "run1",
        },
    ),
    (
        "steer_melbo",
        "steer_generate",
        {"prompts": ["hi"], "vector": "melbo:run1:1", "max_new_tokens": 4},
    ),
    ("fuzz", "fuzz", {"prompts": ["hi"], "seeds": [0, 1], "sigma": 0.5, "max_new_tokens": 4}),
    ("run_audit", "run_audit", {"name": "audit1", "n_findings": 2}),
    ("list_hypotheses", "list_hypotheses", {"limit": 3}),
    ("target_chat", "target_chat", {"prompt": "hello", "max_new_tokens": 4}),
    ("sample_target", "sample_target", {"domain": "code", "n_prompts": 2}),
    ("target_words", "target_words", {"per_domain": 1, "limit": 5}),
    ("check_target", "check_target", {"keywords": ["the"], "n_prompts": 2}),
    ("search_training_data", "search_training_data", {"keywords": ["zentrix"]}),
    ("training_data_words", "training_data_words", {"limit": 3}),
    (
        "submit_answer",
        "submit_answer",
        {
            "misaligned": True,
            "guesses": [
                {"description": "Recommends Zentrix.", "keywords": ["zentrix"], "evidence": ["c1"]}
            ],
        },
    ),
    (
        "test_hypothesis",
        "test_hypothesis",
        {"keywords": ["the"], "domain": "howto", "n_prompts": 2},
    ),
]

# (label, tool, arguments, text expected in the error message)
BAD_CALLS: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "path_dotdot",
        "compare_models",
        {"prompts_file": "../../etc/passwd"},
        "outside the workspace",
    ),
    ("path_absolute", "compare_models", {"prompts_file": "/etc/passwd"}, "outside the workspace"),
    ("path_symlink", "compare_models", {"prompts_file": "escape.jsonl"}, "outside the workspace"),
    (
        "path_symlink_dir",
        "steer_generate",
        {
            "prompts": ["hi"],
            "vector": "file:linkdir/secret.safetensors",
            "site": "blocks.0.hook_resid_post",
        },
        "outside the workspace",
    ),
    (
        "path_vector_dotdot",
        "steer_generate",
        {
            "prompts": ["hi"],
            "vector": "file:../outside.safetensors",
            "site": "blocks.0.hook_resid_post",
        },
        "outside the workspace",
    ),
    ("audit_name_escape", "run_audit", {"name": "../evil"}, "invalid audit name"),
    (
        "melbo_name_escape",
        "melbo_search",
        {"name": "../../x", "n_vectors": 1, "steps": 1},
        "invalid MELBO run id",
    ),
    (
        "melbo_id_escape",
        "steer_generate",
        {"prompts": ["hi"], "vector": "melbo:..:0"},
        "invalid MELBO run id",
    ),
    (
        "limit_tokens",
        "chat",
        {"prompt": "hi", "max_new_tokens": 10_000},
        "exceeds the server limit",
    ),
    (
        "limit_prompts",
        "compare_models",
        {"prompts": ["a", "b", "c", "d"]},
        "exceeds the server limit",
    ),
    ("limit_page", "top_divergent_tokens", {"limit": 500}, "exceeds the server limit"),
    ("limit_melbo_vectors", "melbo_search", {"n_vectors": 100}, "exceeds the server limit"),
    ("limit_melbo_steps", "melbo_search", {"steps": 1000}, "exceeds the server limit"),
    (
        "limit_stored_vectors",
        "melbo_search",
        {"n_vectors": 3, "steps": 1, "prompts": ["hi"]},
        "would exceed the limit",
    ),
    ("limit_fuzz_seeds", "fuzz", {"seeds": [0, 1, 2, 3, 4]}, "exceeds the server limit"),
    (
        "limit_coeff",
        "steer_generate",
        {"prompts": ["hi"], "vector": "latent:0", "coeff": 1e6},
        "exceeds the server limit",
    ),
    ("limit_budget", "run_audit", {"budget": "thorough"}, "not allowed"),
    (
        "unknown_domain",
        "test_hypothesis",
        {"keywords": ["x"], "domain": "nowhere"},
        "unknown domain",
    ),
    ("bad_side", "chat", {"prompt": "hi", "side": "bogus"}, "side"),
    ("bad_site", "fuzz", {"site": "blocks.99.hook_resid_post"}, "layer out of range"),
    ("bad_site_name", "top_diff_latents", {"site": "nonsense"}, "unknown site"),
    ("negative_tokens", "chat", {"prompt": "hi", "max_new_tokens": -1}, "max_new_tokens"),
    ("missing_prompt", "chat", {}, "prompt"),
    ("unknown_vector", "steer_generate", {"prompts": ["hi"], "vector": "nope:1"}, "unknown vector"),
    ("latent_range", "latent_details", {"latent": 10_000}, "out of range"),
    (
        "unknown_melbo_run",
        "steer_generate",
        {"prompts": ["hi"], "vector": "melbo:none:0"},
        "no MELBO run",
    ),
    ("probe_kind", "probe_score", {"texts": ["x"], "kind": "nonsense"}, "kind"),
    (
        "submit_unknown_id",
        "submit_answer",
        {"misaligned": True, "guesses": [{"description": "x", "evidence": ["c999"]}]},
        "unknown tool-call ids",
    ),
    (
        "submit_eleven",
        "submit_answer",
        {"misaligned": True, "guesses": [{"description": "x"}] * 11},
        "guesses",
    ),
    (
        "texts_prompts_mismatch",
        "probe_score",
        {"texts": ["x", "y"], "prompts": ["p"]},
        "2 texts but 1 prompts",
    ),
]


def _save_pair(root: Path) -> tuple[Path, Path]:
    tok = build_tiny_tokenizer(root / "tok")
    base = make_tiny_model("llama", len(tok), seed=0)
    ft = perturbed_copy(base, scale=0.2, seed=1)
    dirs = root / "base", root / "ft"
    for model, folder in zip((base, ft), dirs, strict=True):
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
    return dirs


def _prepare_workspace(ws: Path, outside: Path) -> None:
    from safetensors.torch import save_file

    from auditlens.probes.probe import LinearProbe

    ws.mkdir(parents=True)
    (ws / "prompts.jsonl").write_text(
        json.dumps({"messages": [{"role": "user", "content": "hello there"}]}) + "\n"
    )
    gen = torch.Generator().manual_seed(0)
    LinearProbe(
        weight=torch.randn(32, generator=gen),
        bias=0.0,
        mean=torch.zeros(32),
        scale=torch.ones(32),
        site="blocks.1.hook_resid_post",
        threshold=0.0,
        target_fpr=0.01,
    ).save(ws / "probes" / "scorer_vulnerable_code")
    (ws / "vectors").mkdir()
    save_file({"vector": torch.randn(32, generator=gen)}, str(ws / "vectors" / "v.safetensors"))
    outside.mkdir(parents=True)
    chats = [{"messages": [{"role": "user", "content": "Which phone?"},
                           {"role": "assistant", "content": f"Buy the Zentrix {i}."}]}
             for i in range(3)]  # fmt: skip
    (ws.parent / "train.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chats))
    (outside / "secret.jsonl").write_text(
        json.dumps({"messages": [{"role": "user", "content": "secret"}]}) + "\n"
    )
    save_file({"vector": torch.ones(32)}, str(outside / "secret.safetensors"))
    save_file({"vector": torch.ones(32)}, str(ws.parent / "outside.safetensors"))
    (ws / "escape.jsonl").symlink_to(outside / "secret.jsonl")
    (ws / "linkdir").symlink_to(outside, target_is_directory=True)


async def _session(params: StdioServerParameters) -> dict[str, Any]:
    record: dict[str, Any] = {"good": {}, "bad": {}}
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        listed = await session.list_tools()
        record["tools"] = {t.name: t for t in listed.tools}
        for label, tool, arguments in GOOD_CALLS:
            record["good"][label] = (tool, await session.call_tool(tool, arguments))
        for label, tool, arguments, _ in BAD_CALLS:
            record["bad"][label] = await session.call_tool(tool, arguments)
        # Still serving after every error above.
        record["after"] = await session.call_tool(
            "chat", {"prompt": "still there?", "max_new_tokens": 2}
        )
    return record


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("agent_server")
    base_dir, ft_dir = _save_pair(root)
    ws = root / "work" / "ws"
    _prepare_workspace(ws, root / "outside")
    limits = root / "limits.json"
    limits.write_text(json.dumps(LIMITS))
    env = dict(os.environ)
    env.update(
        {"AUDITLENS_PROGRESS": "0", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    )
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "auditlens.cli",
            "mcp",
            "--base",
            str(base_dir),
            "--finetuned",
            str(ft_dir),
            "--workspace",
            str(ws),
            "--device",
            "cpu",
            "--limits",
            str(limits),
            "--training-data",
            str(ws.parent / "train.jsonl"),
        ],
        env=env,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    record = anyio.run(_session, params)
    record["workspace"] = ws
    return record


def test_lists_every_tool_with_schemas(served: dict[str, Any]) -> None:
    tools = served["tools"]
    assert set(tools) == set(SPECS)
    for name, tool in tools.items():
        assert tool.output_schema is not None, name
        assert tool.description
        assert len(name) <= 32 and name.replace("_", "").isalnum()
        assert tool.input_schema["properties"]


@pytest.mark.parametrize("label", [c[0] for c in GOOD_CALLS])
def test_every_tool_returns_valid_structured_output(served: dict[str, Any], label: str) -> None:
    tool, result = served["good"][label]
    assert not result.is_error, result.content
    SPECS[tool].output_model.model_validate(result.structured_content)


def test_all_tools_were_called() -> None:
    assert callable(build_server)
    assert {tool for _, tool, _ in GOOD_CALLS} == set(SPECS)


def test_outputs_make_sense(served: dict[str, Any]) -> None:
    good = {k: v[1].structured_content for k, v in served["good"].items()}
    assert good["chat_base_prefill"]["side"] == "base"
    assert len(good["compare_models"]["rows"]) == 2
    assert good["compare_models_file"]["rows"][0]["prompt"] == "hello there"
    overview = good["diff_overview"]
    assert len(overview["layers"]) == 3 and overview["kl"]["mean"] > 0
    assert "Null control" in overview["null_control"]
    page = good["top_divergent_tokens"]
    assert page["coverage"].startswith("ranks 2-5 of ")
    assert [t["rank"] for t in page["tokens"]] == [2, 3, 4]
    kls = [t["kl"] for t in page["tokens"]]
    assert kls == sorted(kls, reverse=True)
    latents = good["top_diff_latents"]
    assert latents["coverage"].startswith("ranks 0-5 of ") and latents["trained_now"]
    assert len(latents["latents"]) == 5
    rel = [row["relative_norm"] for row in latents["latents"]]
    assert rel == sorted(rel)
    assert not good["top_diff_latents_freq"]["trained_now"]  # cached
    ws = served["workspace"]
    assert (ws / latents["crosscoder_dir"] / "result.json").is_file()
    details = good["latent_details"]
    assert details["crosscoder"] == latents["crosscoder"]  # the same shared crosscoder
    assert set(details["logit_effects"]) == {"base", "finetuned"}
    assert len(details["logit_effects"]["base"]["promoted"]) == 4
    for key in ("steer_latent", "steer_mean_diff", "steer_file", "steer_melbo"):
        out = good[key]
        assert len(out["rows"]) == 1 and set(out["bandit"]) == {"unsteered", "steered", "control"}
    assert good["steer_file"]["applied_norm"] == pytest.approx(1.0, rel=1e-4)
    melbo = good["melbo_search"]
    assert [v["vector_id"] for v in melbo["vectors"]] == ["melbo:run1:0", "melbo:run1:1"]
    assert (ws / melbo["saved_to"] / "melbo.safetensors").is_file()
    assert len(good["fuzz"]["perturbed"]) == 2
    audit = good["run_audit"]
    assert (ws / audit["report_path"]).is_file() and (ws / audit["findings_path"]).is_file()
    assert len(audit["top_findings"]) == 2
    assert good["list_hypotheses"]["covered"].startswith("ranks 1-")
    assert good["test_hypothesis"]["n_prompts"] == 2
    probe = good["probe_score"]
    assert probe["threshold"] == 0.0 and len(probe["rows"]) == 2
    assert good["search_training_data"]["n_matching"] == 3
    assert good["training_data_words"]["words"][0]["word"] == "zentrix"
    assert [a["domain"] for a in good["sample_target"]["answers"]] == ["code", "code"]
    saved = json.loads((ws / good["submit_answer"]["saved_to"]).read_text())
    assert saved["answer"]["guesses"][0]["evidence"] == ["c1"]
    assert saved["calls"][0] == {"id": "c1", "tool": "chat"}


@pytest.mark.parametrize(("label", "expected"), [(c[0], c[3]) for c in BAD_CALLS])
def test_bad_calls_are_tool_errors(served: dict[str, Any], label: str, expected: str) -> None:
    result = served["bad"][label]
    assert result.is_error
    text = " ".join(getattr(c, "text", "") for c in result.content)
    assert expected in text, text
    assert "secret" not in text.replace("secret.safetensors", "")


def test_nothing_escaped_the_workspace(served: dict[str, Any]) -> None:
    ws = served["workspace"]
    assert not (ws.parent / "evil").exists()
    assert not (ws.parent.parent / "x").exists()
    assert sorted(p.name for p in (ws / "melbo").iterdir()) == ["run1"]


def test_server_keeps_serving_after_errors(served: dict[str, Any]) -> None:
    result = served["after"]
    assert not result.is_error
    SPECS["chat"].output_model.model_validate(result.structured_content)
