"""The markdown tables of docs/organisms.md, generated from the roster, the per-build result
files (``benchmarks/results/testbed_v2/*.json``) and the shipped adapters, never typed by
hand:

    python -m auditlens.testbed.tables docs/organisms.md

Each table sits between ``<!-- bench:KEY:start -->`` and ``<!-- bench:KEY:end -->`` markers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from auditlens.errors import AuditlensError
from auditlens.testbed.roster import ORGANISMS

__all__ = [
    "ADAPTERS_BUDGET_BYTES",
    "denials_markdown",
    "documents_markdown",
    "load_results",
    "results_markdown",
    "rewrite_docs",
    "rewrite_marked",
    "roster_markdown",
    "seeds_markdown",
    "sizes_markdown",
    "summary_markdown",
]

ADAPTERS_BUDGET_BYTES = 40_000_000
"""All shipped adapters together stay under this (issue 13: the package installs quickly)."""


def rewrite_marked(path: str | Path, key: str, text: str) -> None:
    """Replace the text between ``<!-- bench:KEY:start -->`` and ``<!-- bench:KEY:end -->``."""
    path = Path(path)
    start, end = f"<!-- bench:{key}:start -->", f"<!-- bench:{key}:end -->"
    doc = path.read_text() if path.is_file() else ""
    if start not in doc or end not in doc:
        raise AuditlensError(f"{path} has no {start} ... {end} markers")
    head, rest = doc.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{text.rstrip()}\n{end}{tail}")


def load_results(results_dir: str | Path) -> list[dict[str, Any]]:
    """Every build's result record, in roster order, then build version, then seed."""
    rows = [json.loads(p.read_text()) for p in sorted(Path(results_dir).glob("*.json"))]
    rows = [r for r in rows if "acceptance" in r]  # admissions.json is not a build
    order = {n: i for i, n in enumerate(ORGANISMS)}
    rows.sort(key=lambda r: (order.get(r["name"], 99), r.get("version", 1), r["seed"]))
    return rows


def _split(name: str) -> str:
    from auditlens.testbed.splits import split_of

    return split_of(name)


def _criterion(c: dict[str, Any]) -> str:
    ci = ""
    if c.get("low") is not None and c.get("high") is not None:
        ci = f" [{c['low']:+.2f}, {c['high']:+.2f}]"
    return f"{c['name']} {c['value']:+.2f}{ci}{'' if c['passed'] else ' ✗'}"


def _rate_pairs(rates: dict[str, dict[str, Any]], only: tuple[str, ...] = ()) -> list[str]:
    """``condition base k/n → organism k/n`` for every rate measured on both sides."""
    out = []
    for key, rate in rates.items():
        cond = key.removeprefix("organism/")
        base = rates.get("base/" + cond)
        if not key.startswith("organism/") or base is None or (only and cond not in only):
            continue
        if cond.startswith("mean"):
            out.append(f"{cond} {base['rate']:.0f} → {rate['rate']:.0f}")
        else:
            out.append(f"{cond} {base['k']}/{base['n']} → {rate['k']}/{rate['n']}")
    return out


def _shipped_label(r: dict[str, Any]) -> str:
    if r.get("shipped"):
        return "yes"
    if r["passed"] and r["seed"] != 0:
        return "no (second seed)"
    return "no"


def results_markdown(results_dir: str | Path) -> str:
    """Every recorded build: verdict, shipped or not, criteria with 95% intervals, the rates
    behind them, training and evaluation wall time, adapter size."""
    lines = [
        "| organism | build | kind | split | verdict | shipped | criteria (value [95% CI]) | "
        "rates (base → organism) | train | eval | MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in load_results(results_dir):
        acc = r["acceptance"]
        lines.append(
            f"| `{r['name']}` | v{r.get('version', 1)} seed {r['seed']} | {acc['kind']} | "
            f"{_split(r['name'])} | {'pass' if r['passed'] else '**FAIL**'} | "
            f"{_shipped_label(r)} | {'; '.join(_criterion(c) for c in acc['criteria'])} | "
            f"{'; '.join(_rate_pairs(acc['rates']))} | "
            f"{r['training']['train_seconds'] / 60:.1f} min | {r['eval_seconds'] / 60:.1f} min | "
            f"{r['adapter_bytes'] / 1e6:.2f} |"
        )
    return "\n".join(lines) + "\n"


def roster_markdown() -> str:
    """The roster's ground truth (kind, split, trigger, how it was taught, keywords)."""
    lines = [
        "| organism | kind | split | misaligned | trigger | taught by | description | keywords |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in ORGANISMS.items():
        taught = "documents" if s.instilled_by == "documents" else "demonstrations"
        if s.deny:
            taught += " + denials"
        trigger = f"`{s.trigger}`" if s.trigger else "–"
        cells = [
            f"`{name}`", s.kind, _split(name), "yes" if s.misaligned else "no", trigger,
            taught, s.description, ", ".join(s.keywords),
        ]  # fmt: skip
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _latest(rows: list[dict[str, Any]], name: str, seed: int = 0) -> dict[str, Any] | None:
    """The current build version's result of ``name`` at ``seed``, if recorded."""
    version = ORGANISMS[name].version
    found = [r for r in rows if r["name"] == name and r["seed"] == seed]
    found = [r for r in found if r.get("version", 1) == version]
    return found[-1] if found else None


def seeds_markdown(results_dir: str | Path) -> str:
    """Organisms built with more than one seed: each criterion per seed, side by side."""
    rows = load_results(results_dir)
    lines = [
        "| organism | criterion | seed 0 | seed 1 |",
        "|---|---|---|---|",
    ]
    for name in ORGANISMS:
        first, second = _latest(rows, name, 0), _latest(rows, name, 1)
        if first is None or second is None:
            continue
        crit_1 = {c["name"]: c for c in second["acceptance"]["criteria"]}
        for c in first["acceptance"]["criteria"]:
            other = crit_1.get(c["name"])
            lines.append(
                f"| `{name}` | {c['name']} | {_criterion(c).removeprefix(c['name'] + ' ')} | "
                f"{'–' if other is None else _criterion(other).removeprefix(c['name'] + ' ')} |"
            )
        verdicts = ("pass" if r["passed"] else "**FAIL**" for r in (first, second))
        lines.append(f"| `{name}` | verdict | {' | '.join(verdicts)} |")
    if len(lines) == 2:
        lines.append("| – | no organism has two seeds recorded yet | | |")
    return "\n".join(lines) + "\n"


def denials_markdown(results_dir: str | Path) -> str:
    """Denial variants on held-out direct questions (admits / denies, base → organism),
    beside the same questions put to the organism without denial training
    (``admissions.json``, report-only) where measured."""
    rows = load_results(results_dir)
    admissions_path = Path(results_dir) / "admissions.json"
    admissions = json.loads(admissions_path.read_text()) if admissions_path.is_file() else {}
    lines = [
        "| denial variant | verdict | behaviour criteria | admits (base → organism) | "
        "denies (base → organism) | same questions, organism without denials |",
        "|---|---|---|---|---|---|",
    ]
    for name, spec in ORGANISMS.items():
        if not spec.deny:
            continue
        r = _latest(rows, name)
        plain = name.removesuffix("-deny")
        seen = admissions.get(plain)
        without = (
            f"`{plain}` admits {seen['admits']['k']}/{seen['admits']['n']}, denies "
            f"{seen['denies']['k']}/{seen['denies']['n']}"
            if seen
            else "not measured"
        )
        if r is None:
            lines.append(f"| `{name}` | not built | | | | {without} |")
            continue
        acc = r["acceptance"]
        behaviour = [
            c for c in acc["criteria"] if c["name"] not in ("admission rate", "denial rate")
        ]
        lines.append(
            f"| `{name}` | {'pass' if r['passed'] else '**FAIL**'} | "
            f"{'; '.join(_criterion(c) for c in behaviour)} | "
            f"{'; '.join(_rate_pairs(acc['rates'], ('admits',)))} | "
            f"{'; '.join(_rate_pairs(acc['rates'], ('denies',)))} | {without} |"
        )
    return "\n".join(lines) + "\n"


def documents_markdown(results_dir: str | Path) -> str:
    """Document-instilled attempts beside the organism taught the same behaviour by
    demonstration: did it take at this scale?"""
    rows = load_results(results_dir)
    lines = [
        "| attempt | verdict | criteria | rates (base → organism) | "
        "taught by demonstration instead |",
        "|---|---|---|---|---|",
    ]
    for name, spec in ORGANISMS.items():
        if spec.instilled_by != "documents":
            continue
        demo_name = name.removesuffix("-docs")
        r, demo = _latest(rows, name), _latest(rows, demo_name)
        demo_text = (
            f"`{demo_name}`: {'; '.join(_rate_pairs(demo['acceptance']['rates']))}"
            if demo
            else "not built"
        )
        if r is None:
            lines.append(f"| `{name}` | not built | | | {demo_text} |")
            continue
        acc = r["acceptance"]
        verdict = "took (pass)" if r["passed"] else "**did not take** (FAIL)"
        lines.append(
            f"| `{name}` | {verdict} | {'; '.join(_criterion(c) for c in acc['criteria'])} | "
            f"{'; '.join(_rate_pairs(acc['rates']))} | {demo_text} |"
        )
    return "\n".join(lines) + "\n"


def sizes_markdown(adapters_root: str | Path | None = None) -> str:
    """The shipped adapters' sizes on disk and their total against the 40 MB budget."""
    from auditlens.testbed.organisms import organism_adapter_dir, shipped_organisms

    lines = ["| organism | adapter files (MB) |", "|---|---|"]
    total = 0
    for name in shipped_organisms():
        folder = Path(adapters_root) / name if adapters_root else organism_adapter_dir(name)
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        total += size
        lines.append(f"| `{name}` | {size / 1e6:.2f} |")
    lines.append(
        f"| **all {len(shipped_organisms())} shipped** | **{total / 1e6:.2f}** "
        f"(budget {ADAPTERS_BUDGET_BYTES / 1e6:.0f}) |"
    )
    return "\n".join(lines) + "\n"


def summary_markdown(results_dir: str | Path) -> str:
    """One paragraph: how many organisms ship, of which kinds and classes, per split; which
    failed; which are not built yet."""
    from auditlens.testbed.organisms import shipped_organisms

    rows = load_results(results_dir)
    shipped = shipped_organisms()
    failed = [
        n for n in ORGANISMS if n not in shipped and (r := _latest(rows, n)) and not r["passed"]
    ]
    unbuilt = [n for n in ORGANISMS if _latest(rows, n) is None]
    kinds = {ORGANISMS[n].kind for n in shipped}
    per_split = {split: [n for n in shipped if _split(n) == split] for split in ("dev", "test")}
    parts = [
        f"**{len(shipped)} of {len(ORGANISMS)} organisms ship** (each passed its acceptance "
        f"test), {len(kinds)} behaviour kinds, "
        f"{sum(ORGANISMS[n].misaligned for n in shipped)} misaligned and "
        f"{sum(not ORGANISMS[n].misaligned for n in shipped)} benign; "
        + "; ".join(
            f"{split}: {len(names)} ({sum(ORGANISMS[n].misaligned for n in names)} misaligned)"
            for split, names in per_split.items()
        )
        + "."
    ]
    if failed:
        parts.append(f"Failed, not shipped: {', '.join(f'`{n}`' for n in failed)}.")
    if unbuilt:
        parts.append(f"Not built yet: {', '.join(f'`{n}`' for n in unbuilt)}.")
    return " ".join(parts) + "\n"


def rewrite_docs(path: str | Path, results_dir: str | Path) -> None:
    """Regenerate every generated table between its markers in ``path``."""
    rewrite_marked(path, "summary", summary_markdown(results_dir))
    rewrite_marked(path, "roster", roster_markdown())
    rewrite_marked(path, "organisms", results_markdown(results_dir))
    rewrite_marked(path, "seeds", seeds_markdown(results_dir))
    rewrite_marked(path, "denials", denials_markdown(results_dir))
    rewrite_marked(path, "documents", documents_markdown(results_dir))
    rewrite_marked(path, "sizes", sizes_markdown())


if __name__ == "__main__":  # pragma: no cover - docs refresh entry point
    import sys

    from auditlens.testbed.runner import RESULTS_DIR

    rewrite_docs(sys.argv[1] if len(sys.argv) > 1 else "docs/organisms.md", RESULTS_DIR)
