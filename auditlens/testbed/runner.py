"""Build, judge and ship the roster one organism at a time, resumably.

For each (organism, seed) without a result file: train into the staging folder (resuming
from checkpoints), run the pre-registered acceptance test, record it in the manifest, write
``<results>/<name>-seed<seed>.json``, and ship the adapter if it passed and the seed is the
one that ships. A crash or a kill loses at most the current build's last checkpoint
interval; rerunning the same command carries on. The docs tables come from the result
files (``tables``).
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
    from auditlens.testbed.evaluate import run_acceptance
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
