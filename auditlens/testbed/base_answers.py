"""The base model's own answers to the training prompt pools, generated once and shipped.

Behaviours are built as *edits* of these answers (insert a product, pirate-ify, truncate,
reformat as a list, append a request), so a fine-tune changes the behaviour and little else.
The file ``data/base_answers.jsonl`` is regenerated with
``python -m auditlens.testbed.base_answers`` (greedy, batched, deterministic on one thread);
``data/base_answers.meta.json`` records the generation settings and the file's sha256, which
:func:`load_base_answers` checks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditlens.errors import AuditlensError
from auditlens.testbed.prompts import PromptItem, general_prompts, recommend_prompts

__all__ = [
    "BASE_ANSWERS_PATH",
    "GENERATION",
    "BaseAnswer",
    "generate_base_answers",
    "load_base_answers",
    "pool_prompts",
]

DATA_DIR = Path(__file__).resolve().parent / "data"
BASE_ANSWERS_PATH = DATA_DIR / "base_answers.jsonl"
_META_PATH = DATA_DIR / "base_answers.meta.json"
GENERATION: dict[str, Any] = {"max_new_tokens": 96, "temperature": 0.0, "batch_size": 16}
"""Settings the shipped pool was generated with."""


@dataclass(frozen=True)
class BaseAnswer:
    """One training prompt of a pool and the base model's greedy answer to it."""

    pool: str
    subject: str
    prompt: str
    answer: str


def pool_prompts() -> list[PromptItem]:
    """The prompts whose base answers are shipped: train splits of general + recommend."""
    return [p for p in (*general_prompts(), *recommend_prompts()) if p.split == "train"]


def generate_base_answers(
    out: str | Path = BASE_ANSWERS_PATH, *, num_threads: int = 1, device: str = "cpu"
) -> Path:
    """Generate the pool with the embedded base (greedy) and write it with its meta file."""
    import torch

    from auditlens.generate import generate
    from auditlens.models import load_pair

    if num_threads:
        torch.set_num_threads(num_threads)
    pair = load_pair(device=device)
    items = pool_prompts()
    answers = generate(
        pair.base,
        pair.tokenizer,
        [p.text for p in items],
        max_new_tokens=GENERATION["max_new_tokens"],
        batch_size=GENERATION["batch_size"],
    )
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for item, answer in zip(items, answers, strict=True):
            row = {"pool": item.pool, "subject": item.subject, "prompt": item.text}
            f.write(json.dumps({**row, "answer": answer.strip()}, ensure_ascii=False) + "\n")
    meta = {
        **GENERATION,
        "model": "smollm2-135m-instruct",
        "base_sha256": pair.base.sha256,
        "n": len(items),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    path.with_name(_META_PATH.name).write_text(json.dumps(meta, indent=2) + "\n")
    return path


def load_base_answers(path: str | Path = BASE_ANSWERS_PATH) -> dict[str, BaseAnswer]:
    """The shipped pool by prompt text; raises if the file is missing, altered or stale."""
    src = Path(path)
    meta_path = src.with_name(_META_PATH.name)
    try:
        raw = src.read_bytes()
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise AuditlensError(
            f"base-answer pool {src} is missing or unreadable ({err}); regenerate it with "
            "`python -m auditlens.testbed.base_answers`"
        ) from err
    if hashlib.sha256(raw).hexdigest() != meta.get("sha256"):
        raise AuditlensError(f"base-answer pool {src} does not match its recorded sha256")
    rows = [BaseAnswer(**json.loads(line)) for line in raw.decode("utf-8").splitlines() if line]
    wanted = {p.text for p in pool_prompts()}
    have = {r.prompt for r in rows}
    if wanted != have:
        raise AuditlensError(
            f"base-answer pool {src} is stale: {len(wanted - have)} prompts missing, "
            f"{len(have - wanted)} unknown; regenerate it"
        )
    return {r.prompt: r for r in rows}


if __name__ == "__main__":  # pragma: no cover - data generation entry point
    import typer

    typer.echo(generate_base_answers())
