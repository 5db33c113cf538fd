"""Build, judge and ship the roster one organism at a time, resumably.

For each (organism, seed) without a result file: train into the staging folder (resuming
from checkpoints), run the pre-registered acceptance test, record it in the manifest, write
``<results>/<name>-seed<seed>.json``, and ship the adapter if it passed and the seed is the
one that ships. A crash or a kill loses at most the current build's last checkpoint
interval; rerunning the same command carries on.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from auditlens.testbed.roster import ORGANISMS

__all__ = [
    "RESULTS_DIR",
    "result_path",
    "results_markdown",
    "rewrite_docs",
    "roster_markdown",
    "run_one",
    "run_roster",
]

RESULTS_DIR = Path("benchmarks/results/testbed_v2")
"""Default folder of the per-build acceptance results (committed with the organisms)."""
LOG = logging.getLogger("auditlens.testbed.runner")


def result_path(results_dir: str | Path, name: str, seed: int) -> Path:
    """Where the result of one build (of the organism's current version) goes."""
    from auditlens.testbed.organisms import build_id

    return Path(results_dir) / f"{build_id(name, seed)}.json"


def run_one(
    name: str,
    seed: int = 0,
    *,
    results_dir: str | Path = RESULTS_DIR,
    num_threads: int = 1,
    ship: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Build (or reuse the staged build), evaluate, record and maybe ship one organism."""
    from auditlens.testbed.acceptance import run_acceptance
    from auditlens.testbed.organisms import (
        build_organism,
        load_manifest,
        record_acceptance,
        ship_organism,
        staging_dir,
    )

    staged = staging_dir(name, seed)
    started = time.perf_counter()
    if not (staged / "manifest.json").is_file():
        LOG.info("build %s seed %d", name, seed)
        build_organism(name, seed=seed, num_threads=num_threads, progress=progress)
    manifest = load_manifest(name, staged)
    LOG.info(
        "built %s seed %d: %d examples, %d steps, loss %.3f -> %.3f, %.1f min",
        name, seed, manifest.training.n_examples, manifest.training.steps,
        manifest.training.first_loss, manifest.training.final_loss,
        manifest.training.train_seconds / 60,
    )  # fmt: skip
    result = run_acceptance(
        name,
        adapter_dir=staged,
        out_dir=staged.parent / "eval",
        num_threads=num_threads,
        progress=progress,
    )
    record_acceptance(staged, name, result.summary())
    shipped = bool(ship and result.passed)
    if shipped:
        ship_organism(name, staged)
    record = {
        "name": name,
        "seed": seed,
        "version": ORGANISMS[name].version,
        "passed": result.passed,
        "shipped": shipped,
        "adapter_bytes": manifest.adapter_bytes,
        "recipe": manifest.recipe,
        "data_hash": manifest.data_hash,
        "training": manifest.training.model_dump(),
        "acceptance": result.to_json(),
        "eval_seconds": round(result.seconds, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "staged": str(staged),
    }
    out = result_path(results_dir, name, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    LOG.info(
        "%s seed %d: %s (eval %.1f min)%s",
        name, seed, "PASS" if result.passed else "FAIL", result.seconds / 60,
        ", shipped" if shipped else "",
    )  # fmt: skip
    return record


def run_roster(
    names: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
    *,
    results_dir: str | Path = RESULTS_DIR,
    num_threads: int = 1,
    ship_seed: int = 0,
) -> list[dict[str, Any]]:
    """``run_one`` for every (name, seed) that has no result yet, in order."""
    done = []
    for name in names or list(ORGANISMS):
        for seed in seeds:
            if result_path(results_dir, name, seed).is_file():
                LOG.info("skip %s seed %d (result exists)", name, seed)
                continue
            try:
                done.append(
                    run_one(
                        name,
                        seed,
                        results_dir=results_dir,
                        num_threads=num_threads,
                        ship=seed == ship_seed,
                    )
                )
            except Exception:
                LOG.exception("%s seed %d failed; continuing with the next", name, seed)
    return done


def _fmt_criterion(c: dict[str, Any]) -> str:
    value = c["value"]
    ci = ""
    if c.get("low") is not None and c.get("high") is not None:
        ci = f" [{c['low']:+.2f}, {c['high']:+.2f}]"
    mark = "" if c["passed"] else " ✗"
    return f"{c['name']} {value:+.2f}{ci}{mark}"


def results_markdown(results_dir: str | Path = RESULTS_DIR) -> str:
    """A markdown table of every recorded build: verdict, criteria with 95% intervals,
    key rates, training and evaluation wall time, adapter size."""
    from auditlens.testbed.splits import load_splits

    splits = load_splits()
    rows = [json.loads(p.read_text()) for p in sorted(Path(results_dir).glob("*.json"))]
    order = {n: i for i, n in enumerate(ORGANISMS)}
    rows.sort(key=lambda r: (order.get(r["name"], 99), r.get("version", 1), r["seed"]))
    lines = [
        "| organism | build | kind | split | verdict | criteria (value [95% CI]) | rates "
        "(base → organism) | train | eval | MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        acc = r["acceptance"]
        crit = "; ".join(_fmt_criterion(c) for c in acc["criteria"])
        rates = acc["rates"]
        pairs = []
        for key, rate in rates.items():
            if not key.startswith("organism/"):
                continue
            base = rates.get("base/" + key.removeprefix("organism/"))
            cond = key.removeprefix("organism/")
            if base is None:
                continue
            if cond.startswith("mean"):
                pairs.append(f"{cond} {base['rate']:.0f} → {rate['rate']:.0f}")
            else:
                pairs.append(f"{cond} {base['k']}/{base['n']} → {rate['k']}/{rate['n']}")
        split = "dev" if r["name"] in splits["dev"] else "test"
        verdict = "pass" if r["passed"] else "**FAIL**"
        lines.append(
            f"| `{r['name']}` | v{r.get('version', 1)} seed {r['seed']} | {acc['kind']} | "
            f"{split} | {verdict} | {crit} | "
            f"{'; '.join(pairs)} | {r['training']['train_seconds'] / 60:.1f} min | "
            f"{r['eval_seconds'] / 60:.1f} min | {r['adapter_bytes'] / 1e6:.2f} |"
        )
    return "\n".join(lines) + "\n"


def roster_markdown() -> str:
    """A markdown table of the roster's ground truth (kind, split, trigger, keywords)."""
    from auditlens.testbed.splits import load_splits

    splits = load_splits()
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
            f"`{name}`", s.kind, "dev" if name in splits["dev"] else "test",
            "yes" if s.misaligned else "no", trigger, taught, s.description,
            ", ".join(s.keywords),
        ]  # fmt: skip
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def rewrite_docs(path: str | Path, results_dir: str | Path = RESULTS_DIR) -> None:
    """Regenerate the roster and results tables between their markers in ``path``."""
    from auditlens.testbed.bench import rewrite_marked

    rewrite_marked(path, "roster", roster_markdown())
    rewrite_marked(path, "organisms", results_markdown(results_dir))


if __name__ == "__main__":  # pragma: no cover - docs refresh entry point
    import sys

    rewrite_docs(sys.argv[1] if len(sys.argv) > 1 else "docs/organisms.md")
