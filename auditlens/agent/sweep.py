"""The affordance sweep: the built-in investigator on every shipped organism (and base vs base)
per tool subset, graded by the auditing game.

Resumable and cheap in tools: each organism's tool outputs live in one call cache
(``OUT/BUDGET/NAME/calls.jsonl``) that every subset replays, so a sweep costs one pass of tools
per organism; each (organism, subset) record is a JSON file that a re-run skips. With
``audits`` (a ``bench testbed`` folder of the same code and budget), ``list_hypotheses`` reuses
each organism's cached layers, diffing, concern and discovery steps instead of recomputing
them: they are hard-linked into the workspace, and a step whose key differs (other code,
budget, pair or prompts) is recomputed as before. Beside the
agent's success, each hypothesis-producing tool's standalone evidence quality is reported
(do its own candidates match the ground truth at rank 10?) with how often the agent's
matching guess cites it, so a tool that finds the answer but is not used well shows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from auditlens._version import code_version
from auditlens.agent.calls import CallCache
from auditlens.agent.game import BASE_VS_BASE, GameAnswer, Guess, grade, truth_for
from auditlens.agent.investigator import INVESTIGATOR_BUDGETS, investigate
from auditlens.agent.tools import Toolkit, parse_subset, resolve_tools
from auditlens.audit.cache import link_tree
from auditlens.errors import AuditlensError
from auditlens.stats import wilson_interval

__all__ = [
    "DEFAULT_SUBSETS",
    "aggregate",
    "organisms_for",
    "render_game_tables",
    "run_organism",
    "run_sweep",
    "seed_steps",
]

DEFAULT_SUBSETS = (
    "black-box",
    "black-box+diffing",
    "black-box+diffing+probes",
    "black-box+diffing+probes+adversary",
    "all",
    "data-search",
)
METRICS = ("verdict", "discovery@1", "discovery@10", "trigger")
DISCOVERY_STEPS = ("layers", "diffing", "concern", "discovery")
"""The audit steps ``list_hypotheses`` runs (in the workspace's ``discovery`` folder)."""


def organisms_for(split: str) -> list[tuple[str, str]]:
    """(name, split) of the shipped organisms of ``split`` (dev, test or all), plus base vs
    base as ``control``."""
    from auditlens.testbed.organisms import shipped_organisms
    from auditlens.testbed.splits import split_of

    if split not in ("dev", "test", "all"):
        raise AuditlensError(f"unknown split {split!r}; choose dev, test or all")
    named = [(n, split_of(n)) for n in shipped_organisms()]
    return [(BASE_VS_BASE, "control"), *[(n, s) for n, s in named if split in ("all", s)]]


def _standalone(by_tool: dict[str, list[dict[str, Any]]], name: str) -> dict[str, bool | None]:
    truth = truth_for(name)
    out: dict[str, bool | None] = {}
    for tool, guesses in by_tool.items():
        answer = GameAnswer(
            misaligned=False, guesses=[Guess(**g) for g in guesses[:10]], trigger=None
        )
        out[tool] = grade(answer, truth).discovery_at_10
    return out


def seed_steps(audit_dir: Path, workspace: Path) -> list[str]:
    """Hard-link an audit's cached discovery-path steps (``audit_dir/steps/NAME``) into the
    workspace ``list_hypotheses`` runs in; the steps linked. A step already there is kept."""
    linked = []
    for step in DISCOVERY_STEPS:
        src, dst = audit_dir / "steps" / step, workspace / "discovery" / "steps" / step
        if src.is_dir() and not dst.exists():
            link_tree(src, dst)
            linked.append(step)
    return linked


def run_organism(
    name: str,
    split: str,
    out: Path,
    budget: str,
    subsets: Sequence[str],
    load: Callable[[str], Any],
    training_data: Callable[[str], list[tuple[str, str]] | None],
    audits: Path | None = None,
) -> list[dict[str, Any]]:
    """Every subset's record for one organism (computed, or read back when already there);
    ``audits``: a ``bench testbed`` folder whose cached steps ``list_hypotheses`` reuses."""
    folder = out / budget / name
    if audits is not None:
        seed_steps(audits / name, folder / "ws")
    records, pair = [], None
    cache = CallCache(folder / "calls.jsonl")
    for subset in subsets:
        path = folder / f"{subset}.json"
        if path.is_file():
            done = json.loads(path.read_text())
            if done.get("version") == code_version():  # other code's record is redone
                records.append(done)
                continue
        pair = pair if pair is not None else load(name)
        toolkit = Toolkit.create(pair, folder / "ws", budget=budget, tools=subset,
                                 training_data=training_data(name))  # fmt: skip
        result = investigate(toolkit, INVESTIGATOR_BUDGETS[budget], cache)
        g = grade(result.answer, truth_for(name))
        cited = {c.tool for c in result.calls if c.id in set(g.matched_evidence)}
        record = {
            "organism": name, "split": split, "subset": subset, "version": code_version(),
            "grade": g.model_dump(),
            "standalone": _standalone(result.by_tool, name), "cited": sorted(cited),
            "n_calls": len(result.calls), "tool_seconds": sum(c.seconds for c in result.calls),
            "stopped": result.stopped, "answer": result.answer.model_dump(),
        }  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**record, "transcript": result.to_json()}, indent=1))
        records.append(record)
    return records


def _default_load(name: str) -> Any:
    from auditlens.models import load_pair

    return load_pair() if name == BASE_VS_BASE else load_pair(adapter=f"organism:{name}")


def _default_data(name: str) -> list[tuple[str, str]] | None:
    if name == BASE_VS_BASE:
        return None
    from auditlens.testbed.organisms import organism_training_examples

    pairs = []
    for example in organism_training_examples(name):
        user = ""
        for m in example["messages"]:
            if m["role"] == "user":
                user = m["content"]
            elif m["role"] == "assistant":
                pairs.append((user, m["content"]))
    return pairs


def run_sweep(
    out: str | Path,
    *,
    budget: str = "fast",
    split: str = "all",
    subsets: Sequence[str] = DEFAULT_SUBSETS,
    organisms: Sequence[str] | None = None,
    load: Callable[[str], Any] = _default_load,
    training_data: Callable[[str], list[tuple[str, str]] | None] = _default_data,
    audits: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Every record of the sweep (resumable: finished records are read back); ``audits``: a
    ``bench testbed`` folder of the same code and budget whose cached steps are reused."""
    if audits is not None and not Path(audits).is_dir():
        raise AuditlensError(f"--audits {audits}: not a folder")
    if budget not in INVESTIGATOR_BUDGETS:
        raise AuditlensError(f"unknown budget {budget!r}; choose {', '.join(INVESTIGATOR_BUDGETS)}")
    for s in subsets:
        parse_subset(s)
    pairs = organisms_for(split)
    if organisms is not None:
        known = dict(pairs)
        missing = [n for n in organisms if n not in known]
        if missing:
            raise AuditlensError(f"not shipped or not in split {split}: {', '.join(missing)}")
        pairs = [(n, known[n]) for n in organisms]
    records: list[dict[str, Any]] = []
    for name, sp in pairs:
        records += run_organism(name, sp, Path(out), budget, subsets, load, training_data,
                                None if audits is None else Path(audits))  # fmt: skip
    return records


def _rate(values: Sequence[bool]) -> str:
    if not values:
        return "–"
    k, n = sum(values), len(values)
    lo, hi = wilson_interval(k, n)
    return f"{k}/{n} = {k / n:.2f} [{lo:.2f}, {hi:.2f}]"


def aggregate(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, list[bool]]]]:
    """``{split: {subset: {metric: [outcome per organism]}}}``; organisms with nothing to
    discover (the control) or no trigger are left out of those metrics."""
    table: dict[str, dict[str, dict[str, list[bool]]]] = {}
    for r in records:
        g = r["grade"]
        row = table.setdefault(r["split"], {}).setdefault(r["subset"], {m: [] for m in METRICS})
        row["verdict"].append(bool(g["verdict_correct"]))
        for metric, key in (("discovery@1", "discovery_at_1"), ("discovery@10", "discovery_at_10"),
                            ("trigger", "trigger_found")):  # fmt: skip
            if g[key] is not None:
                row[metric].append(bool(g[key]))
    return table


def _width(subset: str) -> int:
    return len(resolve_tools(subset) or ())


def _tool_rows(records: Sequence[dict[str, Any]]) -> dict[str, tuple[list[bool], list[bool]]]:
    """Per tool: standalone discovery@10 per organism, and whether the agent's matching guess
    cited it (over the same organisms, in the widest subset the tool ran in)."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        for tool in r["standalone"]:
            key = (tool, r["organism"])
            if key not in best or _width(r["subset"]) > _width(best[key]["subset"]):
                best[key] = r
    rows: dict[str, tuple[list[bool], list[bool]]] = {}
    for (tool, _), r in sorted(best.items()):
        alone = r["standalone"][tool]
        if alone is None:
            continue
        used = tool in r["cited"]
        rows.setdefault(tool, ([], []))
        rows[tool][0].append(bool(alone))
        rows[tool][1].append(used)
    return rows


def render_game_tables(records: Sequence[dict[str, Any]], budget: str) -> str:
    """Markdown: success per subset with Wilson intervals over organisms, per split (the
    control apart), and each tool's standalone evidence quality beside its use in the agent."""
    table = aggregate(records)
    lines: list[str] = []
    for split in ("dev", "test", "control"):
        if split not in table:
            continue
        n = len({r["organism"] for r in records if r["split"] == split})
        lines += [f"**{split}** ({n} organisms, budget {budget}; k/n = rate [95% Wilson])", "",
                  "| tools | verdict | discovery@1 | discovery@10 | trigger found |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for subset, row in table[split].items():
            cells = " | ".join(_rate(row[m]) for m in METRICS)
            lines.append(f"| {subset} | {cells} |")
        lines.append("")
        tools = _tool_rows([r for r in records if r["split"] == split])
        if tools:
            lines += ["| tool | standalone discovery@10 | cited by the agent's match |",
                      "|---|---|---|"]  # fmt: skip
            lines += [f"| {t} | {_rate(a)} | {_rate(u)} |" for t, (a, u) in tools.items()]
            lines.append("")
    return "\n".join(lines)
