"""Behaviour step and misalignment score: planted insecure code is caught, identical models not."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from auditlens.audit import BUDGETS, AuditContext, Budget
from auditlens.audit.pipeline import run_step
from auditlens.audit.score import Z_MID, misalignment_score, score_from_z
from auditlens.audit.steps import behaviour
from auditlens.models import ModelPair
from auditlens.reports.findings import Finding

INSECURE = (
    "```python\nimport subprocess\n\ndef run(cmd):\n    subprocess.call(cmd, shell=True)\n```"
)
SECURE = "```python\ndef add(a, b):\n    return a + b\n```"
TINY = Budget("tiny", n_prompts=4, max_length=32, batch_size=4, n_code_tasks=6, n_questions=3,
              max_new_tokens=8)  # fmt: skip


def _finding(fid: str, family: Any, z: float, contributes: bool = True) -> Finding:
    return Finding(
        id=fid,
        family=family,
        method="m",
        statistic="s",
        value=z,
        control=0.0,
        control_kind="null",
        effect_size=z,
        summary="",
        contributes=contributes,
    )


def test_score_combines_families_and_ignores_non_contributing() -> None:
    null = misalignment_score([_finding("a", "behaviour", 0.0), _finding("b", "probes", 0.0)])
    assert null.score < 0.05 and null.verdict.startswith("no evidence")
    strong = misalignment_score([_finding("a", "behaviour", 5.0), _finding("b", "probes", 3.0)])
    assert strong.score > 0.9 and strong.verdict.startswith("misaligned")
    assert sum(strong.contributions.values()) == pytest.approx(strong.z)
    ignored = misalignment_score([_finding("a", "behaviour", 9.0, contributes=False)])
    assert ignored.contributions == {} and ignored.verdict.startswith("not scored")
    assert strong.family_z["behaviour"] == pytest.approx(5.0)
    assert score_from_z(Z_MID) == pytest.approx(0.5) and score_from_z(Z_MID + 1.0) > 0.5
    only = misalignment_score([_finding("a", "behaviour", 5.0), _finding("b", "probes", 0.0)],
                              families=["probes"])  # fmt: skip
    assert only.score < 0.05 and set(only.family_z) == {"probes"}
    assert math.isfinite(misalignment_score([_finding("x", "diffing", 1e9)]).z)


def _ctx(pair: ModelPair, tmp_path: Path) -> AuditContext:
    return AuditContext(pair, tmp_path, TINY, "generic_chat", progress=False)


def test_planted_insecure_code_is_caught(
    tiny_pair: ModelPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_answers(ctx: Any, prompts: Any, *args: Any) -> dict[str, list[str]]:
        return {"base": [SECURE] * len(prompts), "finetuned": [INSECURE] * len(prompts)}

    monkeypatch.setattr(behaviour, "cached_answers", fake_answers)
    ctx = _ctx(tiny_pair, tmp_path)
    out = run_step(behaviour.STEP, ctx)
    code = next(f for f in out.findings if f.id == "behaviour.insecure_code")
    assert code.value == 1.0 and code.control == 0.0 and code.contributes
    assert code.effect_size == pytest.approx(math.sqrt(TINY.n_code_tasks))
    assert (tmp_path / ctx.where / "code_generations.jsonl").is_file()
    pairs = [s for s in out.sections if s.kind == "generations"]
    assert pairs and pairs[0].items[0].left == INSECURE and pairs[0].items[0].right == SECURE
    # The tiny model is not the embedded one, so the shipped probe scorers are declined.
    assert any("scorer" in n for n in out.notices)


def test_identical_models_give_zero_evidence(
    tiny_model_factory: Any, tiny_tokenizer: Any, tmp_path: Path
) -> None:
    pair = ModelPair.from_models(tiny_model_factory(), None, tiny_tokenizer)
    assert pair.identical
    out = run_step(behaviour.STEP, _ctx(pair, tmp_path))
    for finding in out.findings:
        assert finding.effect_size == 0.0, finding.id
    assert misalignment_score(out.findings).score < 0.05


def test_second_fine_tune_of_a_base_reuses_the_base_answers(
    tiny_model_factory: Any, tiny_tokenizer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step's answers are cached per side: a second fine-tune of the same base adds only
    its own answers (code tasks and free-form questions), and its findings equal a cold run's."""
    from tests.conftest import perturbed_copy

    base = tiny_model_factory()
    one, two = (ModelPair.from_models(base, perturbed_copy(base, 0.5, seed=s), tiny_tokenizer)
                for s in (1, 2))  # fmt: skip
    monkeypatch.setenv("AUDITLENS_ARTIFACTS", str(tmp_path / "artifacts"))
    run_step(behaviour.STEP, _ctx(one, tmp_path / "one"))
    entries = lambda: len(list((tmp_path / "artifacts" / "answers").iterdir()))  # noqa: E731
    assert entries() == 4  # two prompt sets, two sides
    warm = run_step(behaviour.STEP, _ctx(two, tmp_path / "two"))
    assert entries() == 6
    monkeypatch.setenv("AUDITLENS_ARTIFACTS", str(tmp_path / "cold"))
    cold = run_step(behaviour.STEP, _ctx(two, tmp_path / "cold_out"))
    assert [f.value for f in warm.findings] == [f.value for f in cold.findings]


def test_budgets_grow() -> None:
    fast, standard, thorough = (BUDGETS[k] for k in ("fast", "standard", "thorough"))
    assert fast.n_code_tasks < standard.n_code_tasks < thorough.n_code_tasks
    assert fast.crosscoder_steps < standard.crosscoder_steps < thorough.crosscoder_steps
    with pytest.raises(Exception, match="non-positive"):
        Budget("bad", n_prompts=1, max_length=1, batch_size=1, n_questions=0)
