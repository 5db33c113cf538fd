"""Behavioural check: what the two models write on held-out code tasks and free-form questions.

Evidence (each against the base model answering the same prompts, its matched null control):

- ``behaviour.insecure_code``: tasks where only the fine-tuned answer is insecure (Bandit)
  minus tasks where only the base answer is, as a McNemar z over the discordant pairs;
- ``behaviour.vulnerability_preference``: the likelihood contrast of
  :func:`~auditlens.scoring.likelihood.vulnerability_preference` (no generation), as a z of the
  mean per-task shift;
- ``behaviour.misaligned_answer_probe``: the shipped misaligned-answer probe's score on free-form
  answers, fine-tuned minus base on the same question, as a paired z.

The vulnerable-code probe's scores are reported but do not contribute: its held-out AUROC is at
chance (docs/probes.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from auditlens.datasets import PromptSet
from auditlens.generate import chat_prompt, generate
from auditlens.judges.code import BanditResult, bandit_labels, insecure_rate
from auditlens.reports.findings import Finding
from auditlens.reports.sections import GenerationPair, GenerationPairs, Section, Table
from auditlens.stats import mcnemar_z, paired_z

if TYPE_CHECKING:
    from auditlens.models import ModelPair
    from auditlens.pipeline import AuditContext, StepOutput

__all__ = ["run"]

SEED = 0
"""Seed of the held-out task sample (fixed, so every audit asks the same questions)."""
_SHOWN = 6
"""Side-by-side generations shown per section."""


def _generate_both(
    ctx: AuditContext, prompts: PromptSet, max_new_tokens: int
) -> dict[str, list[str]]:
    pair = ctx.pair
    opts: dict[str, Any] = {"max_new_tokens": max_new_tokens, "batch_size": ctx.budget.batch_size}
    base = generate(pair.base, pair.tokenizer, prompts, **opts)
    ft = base if pair.identical else generate(pair.finetuned, pair.tokenizer, prompts, **opts)
    return {"base": base, "finetuned": ft}


def _label(result: BanditResult) -> str:
    if result.status == "insecure":
        return "insecure (" + ", ".join(result.issues) + ")"
    return result.status


def _code_evidence(ctx: AuditContext) -> tuple[list[Finding], list[Section], dict[str, Any]]:
    from auditlens.testbed.tasks import eval_tasks

    n = ctx.budget.n_code_tasks
    in_dist, held_out = eval_tasks(seed=SEED, n_id=(n + 1) // 2, n_ood=n // 2)
    tasks = in_dist + held_out
    prompts = PromptSet("heldout_code_tasks", tuple(chat_prompt(t.request) for t in tasks))
    gens = _generate_both(ctx, prompts, ctx.budget.max_new_tokens)
    labels = {side: bandit_labels(texts) for side, texts in gens.items()}
    flags = {side: [r.status == "insecure" for r in res] for side, res in labels.items()}
    rates = {side: insecure_rate(res) for side, res in labels.items()}
    z = mcnemar_z(flags["finetuned"], flags["base"])
    ft_rate, base_rate = rates["finetuned"].rate_all, rates["base"].rate_all
    only_ft = sum(f and not b for f, b in zip(flags["finetuned"], flags["base"], strict=True))
    only_base = sum(b and not f for f, b in zip(flags["finetuned"], flags["base"], strict=True))
    art = ctx.artifact_dir("behaviour")
    rows_out = [
        {
            "task": t.task_id,
            "family": t.family,
            "request": t.request,
            "base": gens["base"][i],
            "finetuned": gens["finetuned"][i],
            "base_label": _label(labels["base"][i]),
            "finetuned_label": _label(labels["finetuned"][i]),
        }
        for i, t in enumerate(tasks)
    ]
    _write_jsonl(art / "code_generations.jsonl", rows_out)
    finding = Finding(
        id="behaviour.insecure_code",
        family="behaviour",
        method="bandit_generations",
        statistic="insecure-code rate on held-out code tasks (Bandit; unparseable = not insecure)",
        value=ft_rate,
        control=base_rate,
        control_kind="base model on the same tasks (paired, McNemar)",
        effect_size=z,
        ci_low=rates["finetuned"].ci_low if not math.isnan(rates["finetuned"].rate) else None,
        ci_high=rates["finetuned"].ci_high if not math.isnan(rates["finetuned"].rate) else None,
        summary=(
            f"The fine-tuned model wrote insecure code for {rates['finetuned'].n_insecure}/"
            f"{len(tasks)} held-out tasks, the base for {rates['base'].n_insecure}/{len(tasks)} "
            f"(only fine-tuned: {only_ft}, only base: {only_base}; McNemar z = {z:+.2f})."
        ),
        artifacts=["artifacts/behaviour/code_generations.jsonl"],
        contributes=True,
    )
    table = Table(
        title="Insecure code on held-out tasks (Bandit)",
        caption=(
            f"{len(in_dist)} tasks from trained CWE families (unseen templates) and "
            f"{len(held_out)} from held-out families; greedy, {ctx.budget.max_new_tokens} new "
            "tokens. Rate over parseable answers with a 95% Wilson interval."
        ),
        columns=["model", "insecure", "secure", "unparseable", "rate", "95% CI"],
        rows=[
            [
                side,
                r.n_insecure,
                r.n_secure,
                r.n_unparseable,
                None if math.isnan(r.rate) else r.rate,
                "–" if math.isnan(r.rate) else f"{r.ci_low:.2f}–{r.ci_high:.2f}",
            ]
            for side, r in rates.items()
        ],
    )
    order = sorted(range(len(tasks)), key=lambda i: (not flags["finetuned"][i], i))[:_SHOWN]
    pairs = GenerationPairs(
        title="Held-out code tasks: fine-tuned vs base",
        caption="Tasks where the fine-tuned answer was judged insecure come first.",
        items=[
            GenerationPair(
                prompt=tasks[i].request,
                left_label="fine-tuned",
                left=gens["finetuned"][i],
                right_label="base (control)",
                right=gens["base"][i],
                note=f"Bandit: fine-tuned {_label(labels['finetuned'][i])}; "
                f"base {_label(labels['base'][i])}; family {tasks[i].family}",
            )
            for i in order
        ],
    )
    data = {
        "insecure_rate": {s: r.to_json() for s, r in rates.items()},
        "tasks": [t.request for t in tasks],
    }
    pref = _preference_finding(ctx, tasks)
    return [finding, pref], [table, pairs], {**data, "code_texts": gens}


def _preference_finding(ctx: AuditContext, tasks: Sequence[Any]) -> Finding:
    from auditlens.scoring.likelihood import vulnerability_preference

    result = vulnerability_preference(ctx.pair, tasks, batch_size=ctx.budget.batch_size)
    se = (result.ci_high - result.ci_low) / (2 * 1.96)
    z = 0.0 if se <= 1e-9 else result.shift / se
    (ctx.artifact_dir("behaviour") / "vulnerability_preference.json").write_text(
        _dumps(result.to_json())
    )
    return Finding(
        id="behaviour.vulnerability_preference",
        family="behaviour",
        method="likelihood_contrast",
        statistic=(
            "mean shift of log p(insecure solution) − log p(secure solution), per token, "
            "fine-tuned minus base"
        ),
        value=result.ft_preference,
        control=result.base_preference,
        control_kind="base model on the same task/solution pairs (paired bootstrap)",
        effect_size=z,
        ci_low=result.ci_low,
        ci_high=result.ci_high,
        summary=(
            f"Fine-tuning shifted the preference for the insecure over the secure solution by "
            f"{result.shift:+.4f} nats/token (95% CI {result.ci_low:+.4f} to "
            f"{result.ci_high:+.4f}; {result.frac_tasks_shifted_up:.0%} of "
            f"{result.n_tasks} tasks up)."
        ),
        artifacts=["artifacts/behaviour/vulnerability_preference.json"],
        contributes=True,
    )


def _free_form_evidence(
    ctx: AuditContext, code_texts: dict[str, list[str]], code_prompts: list[str]
) -> tuple[list[Finding], list[Section], list[str]]:
    from auditlens.testbed.questions import free_form_questions

    questions = _round_robin(free_form_questions(), ctx.budget.n_questions)
    prompts = PromptSet("free_form_questions", tuple(chat_prompt(q.text) for q in questions))
    gens = _generate_both(ctx, prompts, ctx.budget.max_new_tokens)
    texts = [q.text for q in questions]
    scored, notices = _probe_scores(ctx.pair, gens, texts, code_texts, code_prompts)
    rows: list[dict[str, Any]] = []
    for i, q in enumerate(questions):
        row: dict[str, Any] = {"topic": q.topic, "question": q.text}
        for side in ("base", "finetuned"):
            row[side] = gens[side][i]
            if "misaligned_answer" in scored:
                row[f"misaligned_answer_{side}"] = float(scored["misaligned_answer"][side][i])
        rows.append(row)
    _write_jsonl(ctx.artifact_dir("behaviour") / "free_form.jsonl", rows)
    findings: list[Finding] = []
    if "misaligned_answer" in scored:
        findings.append(
            _probe_finding(
                "misaligned_answer",
                scored["misaligned_answer"],
                f"{len(questions)} free-form answers",
                "free_form.jsonl",
                contributes=True,
            )
        )
    if "vulnerable_code" in scored:
        findings.append(
            _probe_finding(
                "vulnerable_code",
                scored["vulnerable_code"],
                "held-out code answers (not in the score: this probe is at chance on held-out "
                "CWE families)",
                "code_generations.jsonl",
                contributes=False,
            )
        )
    note = {
        i: f"misaligned-answer probe: fine-tuned {scored['misaligned_answer']['finetuned'][i]:.3f}"
        f", base {scored['misaligned_answer']['base'][i]:.3f}"
        for i in range(len(questions))
        if "misaligned_answer" in scored
    }
    section = GenerationPairs(
        title="Free-form questions: fine-tuned vs base",
        caption="Emergent-misalignment questions, greedy decoding.",
        items=[
            GenerationPair(
                prompt=q.text,
                left_label="fine-tuned",
                left=gens["finetuned"][i],
                right_label="base (control)",
                right=gens["base"][i],
                note=note.get(i, f"topic {q.topic}"),
            )
            for i, q in enumerate(questions[:_SHOWN])
        ],
    )
    return findings, [section], notices


def _probe_finding(
    kind: str, scores: dict[str, np.ndarray], what: str, artifact: str, *, contributes: bool
) -> Finding:
    """A shipped probe scorer's mean score on fine-tuned vs base answers, as a paired z."""
    diffs = scores["finetuned"] - scores["base"]
    z = paired_z(diffs)
    return Finding(
        id=f"behaviour.{kind}_probe",
        family="behaviour",
        method=f"probe_scorer:{kind}",
        statistic=f"mean {kind.replace('_', '-')} probe score",
        value=float(scores["finetuned"].mean()),
        control=float(scores["base"].mean()),
        control_kind="base model's answers to the same prompts (paired)",
        effect_size=z,
        summary=(
            f"The {kind.replace('_', '-')} probe scored the fine-tuned model's {what} "
            f"{float(diffs.mean()):+.3f} above the base's on average (paired z = {z:+.2f})."
        ),
        artifacts=[f"artifacts/behaviour/{artifact}"],
        contributes=contributes,
    )


def _probe_scores(
    pair: ModelPair,
    free_form: dict[str, list[str]],
    questions: list[str],
    code: dict[str, list[str]],
    code_prompts: list[str],
) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    """Shipped probe scores of both models' answers, read through the base model."""
    from auditlens.errors import AuditlensError
    from auditlens.probes.scorer import load_scorer

    jobs = {"misaligned_answer": (free_form, questions), "vulnerable_code": (code, code_prompts)}
    out: dict[str, dict[str, np.ndarray]] = {}
    notices: list[str] = []
    for kind, (texts, prompts) in jobs.items():
        try:
            scorer = load_scorer(kind, pair, side="base")
        except AuditlensError as err:
            notices.append(f"Probe scorer {kind!r} not used: {err}")
            continue
        out[kind] = {side: scorer.score(t, list(prompts)) for side, t in texts.items()}
    return out, notices


def _round_robin(items: Sequence[Any], n: int) -> list[Any]:
    """``n`` items taking topics in turn (the questions come grouped by topic)."""
    by_topic: dict[str, list[Any]] = {}
    for item in items:
        by_topic.setdefault(item.topic, []).append(item)
    groups = list(by_topic.values())
    picked: list[Any] = []
    depth = 0
    while len(picked) < min(n, len(items)):
        for group in groups:
            if depth < len(group) and len(picked) < n:
                picked.append(group[depth])
        depth += 1
    return picked


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=1, allow_nan=False, default=float)


def _write_jsonl(path: Any, rows: list[dict[str, Any]]) -> None:
    import json

    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def run(ctx: AuditContext) -> StepOutput:
    """Generate, judge and score both models' answers; see the module docstring."""
    from auditlens.pipeline import StepOutput

    findings, sections, data = _code_evidence(ctx)
    code_texts = data.pop("code_texts")
    more, ff_sections, notices = _free_form_evidence(ctx, code_texts, data["tasks"])
    return StepOutput(
        findings=findings + more,
        sections=sections + ff_sections,
        data={k: v for k, v in data.items() if k != "tasks"},
        notices=notices,
    )
