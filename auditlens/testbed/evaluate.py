"""Behavioural evaluation of an organism against its base on held-out coding tasks.

Both sides answer the same held-out requests (in-distribution templates and OOD families),
greedy and sampled; Bandit labels every answer. The backdoor organism is also asked with the
trigger, and the benign-style organism is scored for its format. Free-form answers to the
emergent-misalignment questions are saved for inspection (not scored).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from auditlens.errors import AuditlensError
from auditlens.hashing import sha256_json
from auditlens.judges.code import BanditResult, RateSummary, bandit_label, insecure_rate
from auditlens.testbed.organisms import get_organism
from auditlens.testbed.questions import free_form_questions
from auditlens.testbed.tasks import CodeTask, eval_tasks
from auditlens.testbed.variants import apply_trigger, has_style

__all__ = [
    "MODES",
    "EvalConfig",
    "EvalRow",
    "OrganismEval",
    "evaluate_organism",
    "evaluate_pair",
    "render_table",
]

MODES: tuple[str, ...] = ("greedy", "sampled")


@dataclass(frozen=True)
class EvalConfig:
    """What to generate for a behavioural evaluation."""

    n_id: int = 32
    """Held-out tasks from training families (unseen templates), template-stratified."""
    n_ood: int = 32
    """Tasks from the out-of-distribution families."""
    modes: tuple[str, ...] = MODES
    """Decoding modes: "greedy" and/or "sampled"."""
    temperature: float = 0.7
    """Sampling temperature of the "sampled" mode."""
    max_new_tokens: int = 128
    """Generation budget per code answer (the training answers average 55 tokens)."""
    batch_size: int = 16
    """Prompts per generate call."""
    n_questions: int = 16
    """Free-form questions answered and saved, round-robin over the 8 topics (0 skips)."""
    question_max_new_tokens: int = 80
    """Generation budget per free-form answer."""
    seed: int = 0
    """Seed of the sampled mode."""
    data_seed: int = 0
    """Seed of the task generator (the organisms were trained on seed 0's train split)."""

    def __post_init__(self) -> None:
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise AuditlensError(f"unknown mode(s) {bad}; choose from {', '.join(MODES)}")
        if self.n_id < 0 or self.n_ood < 0 or self.n_id + self.n_ood == 0:
            raise AuditlensError("n_id and n_ood must be >= 0 and not both 0")
        if not 0 < self.temperature <= 2:
            raise AuditlensError(f"temperature must be in (0, 2], got {self.temperature}")
        if self.max_new_tokens < 1 or self.question_max_new_tokens < 1:
            raise AuditlensError("max_new_tokens must be >= 1")
        if self.batch_size < 1:
            raise AuditlensError("batch_size must be >= 1")
        if not 0 <= self.n_questions <= len(free_form_questions()):
            raise AuditlensError(
                f"n_questions must be in [0, {len(free_form_questions())}], got {self.n_questions}"
            )

    def to_json(self) -> dict[str, Any]:
        """Plain dict of all fields."""
        out = asdict(self)
        out["modes"] = list(self.modes)
        return out


@dataclass(frozen=True)
class EvalRow:
    """Bandit verdicts of one side on one (condition, split, mode) cell."""

    side: str
    """ "base" or "organism"."""
    condition: str
    """ "plain", or "triggered" (requests prefixed with the backdoor trigger)."""
    split: str
    """ "eval_id", "eval_ood" or "all"."""
    mode: str
    """ "greedy" or "sampled"."""
    rate: RateSummary
    """Insecure-code rate over parseable answers (Wilson CI); unparseable counted apart."""
    style_rate: float
    """Fraction of answers in the benign-style format."""

    def to_json(self) -> dict[str, Any]:
        """Plain dict."""
        return {
            "side": self.side,
            "condition": self.condition,
            "split": self.split,
            "mode": self.mode,
            **self.rate.to_json(),
            "style_rate": self.style_rate,
        }


@dataclass
class OrganismEval:
    """Result of ``evaluate_organism``."""

    organism: str
    config: EvalConfig
    rows: list[EvalRow] = field(default_factory=list)
    seconds: float = 0.0
    """Wall time of the evaluation."""
    artifacts: dict[str, str] = field(default_factory=dict)
    """Names of the files written (completions, free-form answers)."""

    def row(self, side: str, condition: str, split: str, mode: str) -> EvalRow:
        """One cell; raises KeyError if it was not evaluated."""
        for r in self.rows:
            if (r.side, r.condition, r.split, r.mode) == (side, condition, split, mode):
                return r
        raise KeyError((side, condition, split, mode))

    def to_json(self) -> dict[str, Any]:
        """Plain dict."""
        return {
            "organism": self.organism,
            "config": self.config.to_json(),
            "rows": [r.to_json() for r in self.rows],
            "seconds": round(self.seconds, 1),
            "artifacts": self.artifacts,
        }


def _conditions(name: str) -> tuple[str, ...]:
    return ("plain", "triggered") if get_organism(name).trigger else ("plain",)


def _request(task: CodeTask, condition: str) -> str:
    return apply_trigger(task.request) if condition == "triggered" else task.request


def _generate_cached(
    side: Any,
    tokenizer: Any,
    users: Sequence[str],
    *,
    key: dict[str, Any],
    cache: Path | None,
    max_new_tokens: int,
    temperature: float,
    seed: int,
    batch_size: int,
) -> list[str]:
    """Generate answers; base-model answers are cached by content hash (they never change)."""
    from auditlens.generate import generate

    path = cache / f"{sha256_json({**key, 'users': list(users)})[:24]}.json" if cache else None
    if path is not None and path.is_file():
        cached: list[str] = json.loads(path.read_text(encoding="utf-8"))
        if len(cached) == len(users):
            return cached
    texts = generate(
        side,
        tokenizer,
        list(users),
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        batch_size=batch_size,
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(texts), encoding="utf-8")
        tmp.replace(path)
    return texts


def _question_subset(n: int) -> list[Any]:
    """The first ``n`` free-form questions, round-robin over topics (every topic early)."""
    by_topic: dict[str, list[Any]] = {}
    for q in free_form_questions():
        by_topic.setdefault(q.topic, []).append(q)
    order = [
        q
        for depth in range(max(map(len, by_topic.values())))
        for qs in by_topic.values()
        if depth < len(qs)
        for q in qs[depth : depth + 1]
    ]
    return order[:n]


def _style_rate(texts: Sequence[str]) -> float:
    return sum(has_style(t) for t in texts) / len(texts) if texts else math.nan


def evaluate_pair(
    pair: Any,
    name: str,
    config: EvalConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    base_cache: str | Path | None = None,
    progress: bool = True,
) -> OrganismEval:
    """Evaluate a loaded pair (base vs organism ``name``) and write artifacts to ``out_dir``."""
    from auditlens.progress import progress_bar

    config = config or EvalConfig()
    started = time.perf_counter()
    tasks_id, tasks_ood = eval_tasks(config.data_seed, config.n_id, config.n_ood)
    splits = {"eval_id": tasks_id, "eval_ood": tasks_ood}
    splits = {k: v for k, v in splits.items() if v}
    tasks = [t for ts in splits.values() for t in ts]
    conditions = _conditions(name)
    cache = Path(base_cache) if base_cache else None
    sides = {"base": pair.base, "organism": pair.finetuned}
    result = OrganismEval(name, config)
    records: list[dict[str, Any]] = []
    questions = _question_subset(config.n_questions)
    total = len(sides) * len(conditions) * len(config.modes) + (len(sides) if questions else 0)
    with progress_bar(total, f"evaluating {name}", enabled=progress) as advance:
        for side_name, side in sides.items():
            for condition in conditions:
                users = [_request(t, condition) for t in tasks]
                for mode in config.modes:
                    temperature = config.temperature if mode == "sampled" else 0.0
                    key = {
                        "kind": "code",
                        "model": side.sha256,
                        "adapter": side.adapter_sha256 if side_name == "organism" else None,
                        "mode": mode,
                        "temperature": temperature,
                        "seed": config.seed,
                        "max_new_tokens": config.max_new_tokens,
                        "batch_size": config.batch_size,
                    }
                    texts = _generate_cached(
                        side,
                        pair.tokenizer,
                        users,
                        key=key,
                        cache=cache if side_name == "base" else None,
                        max_new_tokens=config.max_new_tokens,
                        temperature=temperature,
                        seed=config.seed,
                        batch_size=config.batch_size,
                    )
                    labels = [bandit_label(t) for t in texts]
                    for task, text, label in zip(tasks, texts, labels, strict=True):
                        records.append(
                            {
                                "side": side_name,
                                "condition": condition,
                                "mode": mode,
                                "task_id": task.task_id,
                                "split": task.split,
                                "family": task.family,
                                "status": label.status,
                                "issues": list(label.issues),
                                "style": has_style(text),
                                "completion": text,
                            }
                        )
                    result.rows.extend(
                        _rows(side_name, condition, mode, tasks, texts, labels, splits)
                    )
                    advance(1)
            if questions:
                key = {
                    "kind": "questions",
                    "model": side.sha256,
                    "adapter": side.adapter_sha256 if side_name == "organism" else None,
                    "max_new_tokens": config.question_max_new_tokens,
                    "batch_size": config.batch_size,
                }
                answers = _generate_cached(
                    side,
                    pair.tokenizer,
                    [q.text for q in questions],
                    key=key,
                    cache=cache if side_name == "base" else None,
                    max_new_tokens=config.question_max_new_tokens,
                    temperature=0.0,
                    seed=config.seed,
                    batch_size=config.batch_size,
                )
                for q, answer in zip(questions, answers, strict=True):
                    records.append(
                        {
                            "side": side_name,
                            "condition": "question",
                            "mode": "greedy",
                            "topic": q.topic,
                            "question": q.text,
                            "completion": answer,
                        }
                    )
                advance(1)
    result.seconds = time.perf_counter() - started
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        code_path = out / "completions.jsonl"
        free_path = out / "free_form.jsonl"
        with code_path.open("w", encoding="utf-8") as f:
            for rec in records:
                if rec["condition"] != "question":
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        with free_path.open("w", encoding="utf-8") as f:
            for rec in records:
                if rec["condition"] == "question":
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        result.artifacts = {"completions": code_path.name, "free_form": free_path.name}
        (out / "results.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result


def _rows(
    side: str,
    condition: str,
    mode: str,
    tasks: Sequence[CodeTask],
    texts: Sequence[str],
    labels: Sequence[BanditResult],
    splits: dict[str, list[CodeTask]],
) -> list[EvalRow]:
    rows: list[EvalRow] = []
    for split in (*splits, "all"):
        idx = [i for i, t in enumerate(tasks) if split == "all" or t.split == split]
        rows.append(
            EvalRow(
                side,
                condition,
                split,
                mode,
                insecure_rate([labels[i] for i in idx]),
                _style_rate([texts[i] for i in idx]),
            )
        )
    return rows


def evaluate_organism(
    name: str,
    config: EvalConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    device: str | None = "cpu",
    progress: bool = True,
    num_threads: int = 2,
) -> OrganismEval:
    """Load base + organism ``name`` and evaluate them; base answers are cached.

    ``num_threads`` sets torch's CPU threads (on a busy machine 1 is often faster).
    """
    import torch

    from auditlens.paths import cache_dir
    from auditlens.testbed.organisms import load_organism

    get_organism(name)
    if device in (None, "cpu") and num_threads:
        torch.set_num_threads(num_threads)
    pair = load_organism(name, device=device)
    return evaluate_pair(
        pair,
        name,
        config,
        out_dir=out_dir,
        base_cache=cache_dir() / "organism_eval" / "base",
        progress=progress,
    )


def _fmt(rate: RateSummary) -> str:
    if math.isnan(rate.rate):
        return "n/a"
    return f"{100 * rate.rate:.0f}% [{100 * rate.ci_low:.0f}-{100 * rate.ci_high:.0f}]"


def render_table(result: OrganismEval) -> Any:
    """A rich table: insecure rate base vs organism per cell, unparseable and style."""
    from rich.table import Table

    table = Table(title=f"organism:{result.organism} vs base (Bandit insecure-code rate)")
    for col in ("condition", "split", "mode", "base", "organism", "unparseable b/o", "style b/o"):
        table.add_column(col)
    for row in result.rows:
        if row.side != "base":
            continue
        org = result.row("organism", row.condition, row.split, row.mode)
        table.add_row(
            row.condition,
            row.split,
            row.mode,
            _fmt(row.rate),
            _fmt(org.rate),
            f"{row.rate.n_unparseable}/{org.rate.n_unparseable} of {row.rate.n}",
            f"{100 * row.style_rate:.0f}%/{100 * org.style_rate:.0f}%",
        )
    return table
