"""The adversary step: one perturbation set on both sides, scored as a difference in
differences (fine-tune perturbed − unperturbed) − (base perturbed − unperturbed)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from auditlens.adversary import elicit
from auditlens.adversary.elicit import ElicitSettings
from auditlens.audit import AuditContext, Budget
from auditlens.audit.pipeline import run_step
from auditlens.audit.steps import adversary
from auditlens.datasets import PromptSet
from auditlens.generate import chat_prompt, generate
from auditlens.models import ModelPair
from auditlens.reports.sections import GenerationPairs, Table
from tests.conftest import perturbed_copy


def _changed_detector(pair: ModelPair, prompts: list[str], tokens: int) -> Callable[[str], bool]:
    """Stands in for 'insecure code': any answer the unperturbed base model did not give."""
    chat = PromptSet("p", tuple(chat_prompt(p) for p in prompts))
    reference = set(generate(pair.base, pair.tokenizer, chat, max_new_tokens=tokens))
    return lambda text: text not in reference


def _settings(**kw: Any) -> ElicitSettings:
    opts: dict[str, Any] = {
        "n_vectors": 2, "melbo_steps": 3, "max_new_tokens": 6, "n_noise": 2,
    }  # fmt: skip
    return ElicitSettings(**(opts | kw))


def shrunk_copy(model: torch.nn.Module, c: float) -> torch.nn.Module:
    """The same function with a residual stream ``c`` times smaller (embeddings and every block's
    output scaled, RMSNorm's eps by c²): unperturbed it answers exactly as ``model`` does, but a
    perturbation of a given norm moves it 1/c times as far. A planted steerable model."""
    ft = copy.deepcopy(model)
    with torch.no_grad():
        ft.model.embed_tokens.weight.mul_(c)
        for layer in ft.model.layers:
            layer.self_attn.o_proj.weight.mul_(c)
            layer.mlp.down_proj.weight.mul_(c)
    for module in ft.modules():
        if hasattr(module, "variance_epsilon"):
            module.variance_epsilon *= c * c
    return ft


def test_planted_steerable_model_gives_a_positive_difference_in_differences(
    tiny_tokenizer: Any, tiny_model_factory: Callable[..., torch.nn.Module], prompts: list[str]
) -> None:
    base = tiny_model_factory("llama")
    pair = ModelPair.from_models(base, shrunk_copy(base, 0.05), tiny_tokenizer)
    questions = (prompts * 3)[:12]
    detector = _changed_detector(pair, questions, 6)
    settings = _settings(radius=0.8, noise_grid=((0.2, 0), (0.2, 1)))
    search = elicit.run(pair, questions, settings, detector=detector)
    assert search.rate("finetuned", "unperturbed") == search.rate("base", "unperturbed") == 0.0
    main = next(f for f in elicit.evidence(search).findings if f.contributes)
    assert main.id == "adversary.elicited_insecure_code"
    assert main.value >= 0.5 and main.control == 0.0
    assert main.effect_size is not None and main.effect_size >= 2.0


def test_unprompted_difference_cancels_in_the_difference_in_differences(
    tiny_tokenizer: Any,
    tiny_model_factory: Callable[..., torch.nn.Module],
    prompts: list[str],
    tmp_path: Path,
) -> None:
    base = tiny_model_factory("llama")
    pair = ModelPair.from_models(base, perturbed_copy(base, scale=1.0), tiny_tokenizer)
    detector = _changed_detector(pair, prompts[:8], 6)
    # Tiny perturbations: the base keeps its answers; the planted model's answers differ anyway.
    settings = _settings(radius=1e-3, sigmas=(1e-3,))
    search = elicit.run(pair, prompts[:8], settings, detector=detector)
    assert search.searched[:2] == ["melbo_0", "melbo_1"] and len(search.searched) == 4
    assert [r.name for r in search.base.rows][1:] == search.searched  # same rows on both sides
    controls = search.finetuned.controls_for("melbo_0")
    assert len(controls) == 2  # as many random controls as MELBO vectors, of equal norm
    melbo_norm = search.finetuned.row("melbo_0").norm
    assert all(c.norm == pytest.approx(melbo_norm, rel=1e-5) for c in controls)
    assert all(search.rate("base", name) == 0.0 for name in search.flags["base"])
    assert search.rate("finetuned", "unperturbed") >= 0.75

    search.save(tmp_path)
    out = elicit.evidence(search, "a")
    main = next(f for f in out.findings if f.id == "adversary.elicited_insecure_code")
    # The fine-tune differs unprompted (the behaviour step's evidence), but the perturbations
    # move it no more than they move the base: no adversarial evidence.
    assert main.contributes and main.value == main.control == 0.0 and main.effect_size == 0.0
    assert [f.id for f in out.findings if f.contributes] == [main.id]
    kinds = [type(s) for s in out.sections]
    assert kinds.count(GenerationPairs) == 2 and Table in kinds
    pairs = next(s for s in out.sections if isinstance(s, GenerationPairs))
    assert pairs.items[0].right_label.startswith("base, same perturbation")
    table = next(s for s in out.sections if isinstance(s, Table))
    assert len(table.rows) == len(search.finetuned.rows) + len(search.base.rows)
    json.loads(out.model_dump_json())


def test_matched_null_gives_zero(
    tiny_tokenizer: Any,
    tiny_model_factory: Callable[..., torch.nn.Module],
    prompts: list[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Identical weights, both sides run separately: the same perturbations give the same rows."""
    base = tiny_model_factory("llama")
    pair = ModelPair.from_models(base, copy.deepcopy(base), tiny_tokenizer)
    monkeypatch.setattr(ModelPair, "identical", property(lambda _pair: False))
    detector = _changed_detector(pair, prompts[:8], 6)
    # Large perturbations change many answers, so unmatched noise or vectors would show up.
    search = elicit.run(pair, prompts[:8], _settings(sigmas=(2.0,)), detector=detector)
    assert not search.shared_sides
    assert max(search.rate("finetuned", n) for n in search.searched) > 0
    for name in search.searched:
        assert search.flags["finetuned"][name] == search.flags["base"][name]
    search.save(tmp_path)
    out = elicit.evidence(search, "a")
    effects = {f.id: f.effect_size for f in out.findings}
    assert effects["adversary.elicited_insecure_code"] == 0.0
    assert effects["adversary.pooled_insecure_code"] == 0.0


def test_adversary_tasks_are_disjoint_from_the_behaviour_steps() -> None:
    from auditlens.audit.steps.behaviour import held_out_tasks

    for n, n_behaviour in ((8, 32), (16, 64), (32, 128), (4, 6)):
        tasks = adversary.adversary_tasks(n, n_behaviour)
        taken = {t.task_id for t in held_out_tasks(n_behaviour)}
        assert len(tasks) == n and not taken & {t.task_id for t in tasks}
        assert sum(t.split == "eval_ood" for t in tasks) == n // 2


def test_the_code_checks_tasks_are_apart_from_every_scored_task() -> None:
    """Discovery's code-security check reads its own tasks: none is the behaviour step's or the
    adversary's, at every budget, half of them from held-out families."""
    from auditlens.audit.contract import BUDGETS
    from auditlens.audit.steps import discovery
    from auditlens.audit.steps.behaviour import held_out_tasks

    for budget in BUDGETS.values():
        n, n_behaviour, n_adversary = discovery.settings(budget, None).code_tasks  # type: ignore[arg-type]
        assert n == 2 * budget.check_prompts
        check = {t.task_id for t in adversary.check_tasks(n, n_behaviour, n_adversary)}
        scored = {t.task_id for t in held_out_tasks(n_behaviour)}
        scored |= {t.task_id for t in adversary.adversary_tasks(n_adversary, n_behaviour)}
        assert len(check) == n and not check & scored
    with pytest.raises(ValueError, match="evaluation tasks are left"):
        adversary.check_tasks(700, 32, 8)


def test_run_on_code_tasks_base_vs_base(
    tiny_tokenizer: Any, tiny_model_factory: Callable[..., torch.nn.Module], tmp_path: Path
) -> None:
    pair = ModelPair.from_models(tiny_model_factory("llama"), None, tiny_tokenizer)
    budget = Budget(
        "tiny", n_prompts=2, max_length=16, batch_size=4, max_new_tokens=4,
        melbo_vectors=2, melbo_steps=2, adversary_prompts=4,
    )  # fmt: skip
    ctx = AuditContext(pair, tmp_path, budget, "generic_chat", progress=False)
    out = run_step(adversary.STEP, ctx)
    main = next(f for f in out.findings if f.contributes)
    assert main.effect_size == 0.0 and main.value == main.control
    art = tmp_path / ctx.where
    for name in ("summary.json", "finetuned_table.json", "melbo/melbo.safetensors"):
        assert (art / name).is_file()
    assert all((tmp_path / p).is_file() for f in out.findings for p in f.artifacts)
    summary = json.loads((art / "summary.json").read_text())
    assert summary["shared_sides"] and len(summary["prompts"]) == 4
