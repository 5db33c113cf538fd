"""Copy finished testbed builds from the tree where the roster is being built into this one,
then regenerate docs/organisms.md's tables from the result files. Idempotent: run it as
often as you like.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/sync_testbed.py [BUILD_TREE]

Copies every result file (``benchmarks/results/testbed_v2/*.json``) and the adapter folder of
every build whose result says it shipped (passed, seed 0, the roster's current build
version), after checking the adapter's manifest (passed, sha256 of the weights). Removes a
shipped adapter folder here that no shipped result backs (a stale build). Second seeds and
failures contribute their numbers only.
"""

from __future__ import annotations

import filecmp
import json
import shutil
import sys
from pathlib import Path

from auditlens.hashing import sha256_files
from auditlens.testbed.manifest import OrganismManifest
from auditlens.testbed.roster import ORGANISMS
from auditlens.testbed.runner import RESULTS_DIR
from auditlens.testbed.tables import rewrite_docs

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = Path("auditlens/testbed/adapters")
FILES = ("adapter_config.json", "adapter_model.safetensors", "manifest.json", "losses.json")


def _copy(src: Path, dest: Path) -> bool:
    """Copy ``src`` to ``dest`` unless identical; whether it copied."""
    if dest.is_file() and filecmp.cmp(src, dest, shallow=False):
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return True


def _ships(record: dict) -> bool:
    name = record["name"]
    return (
        bool(record.get("shipped") and record.get("passed"))
        and record["seed"] == 0
        and name in ORGANISMS
        and record.get("version", 1) == ORGANISMS[name].version
    )


def _check_adapter(folder: Path, name: str) -> None:
    manifest = OrganismManifest.model_validate_json((folder / "manifest.json").read_text())
    if manifest.acceptance is None or not manifest.acceptance.passed:
        raise SystemExit(f"error: {folder} has not passed its acceptance test")
    weights = folder / "adapter_model.safetensors"
    if sha256_files([weights], cached=False) != manifest.adapter_sha256:
        raise SystemExit(f"error: {weights} does not match its manifest's sha256")
    if manifest.name != name or manifest.seed != 0:
        raise SystemExit(f"error: {folder} holds {manifest.name} seed {manifest.seed}")


def main(build_tree: Path) -> None:
    changed: list[str] = []
    records = []
    for src in sorted((build_tree / RESULTS_DIR).glob("*.json")):
        if _copy(src, ROOT / RESULTS_DIR / src.name):
            changed.append(str(RESULTS_DIR / src.name))
    for path in sorted((ROOT / RESULTS_DIR).glob("*.json")):
        record = json.loads(path.read_text())
        if "acceptance" in record:
            records.append(record)
    shipped = sorted({r["name"] for r in records if _ships(r)})
    for name in shipped:
        src = build_tree / ADAPTERS / name
        _check_adapter(src, name)
        for file in FILES:
            if _copy(src / file, ROOT / ADAPTERS / name / file):
                changed.append(str(ADAPTERS / name / file))
        _check_adapter(ROOT / ADAPTERS / name, name)
    for folder in sorted((ROOT / ADAPTERS).iterdir()):
        if folder.is_dir() and folder.name not in shipped:
            shutil.rmtree(folder)
            changed.append(f"removed {ADAPTERS / folder.name} (no shipped result)")
    rewrite_docs(ROOT / "docs/organisms.md", ROOT / RESULTS_DIR)
    failed = sorted({r["name"] for r in records if not r["passed"] and r["seed"] == 0})
    print(f"{len(records)} build results; shipped {len(shipped)}: {', '.join(shipped)}")
    print(f"failed builds (not shipped): {', '.join(failed) or 'none'}")
    print("\n".join(changed) if changed else "nothing new")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/wt-testbed"))
