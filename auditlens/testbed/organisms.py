"""Registry of the model organisms: LoRA adapters on SmolLM2-135M-Instruct with known truth.

The roster (``roster.ORGANISMS``) defines every organism's ground truth and recipe; its
training data comes from ``behaviours``. A build trains into a staging folder in the cache;
the acceptance test (``acceptance``) judges it there, and only an organism that passes is
copied ("shipped") into ``auditlens/testbed/adapters/<name>/`` with its manifest v2.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auditlens.errors import AuditlensError
from auditlens.testbed.manifest import (
    AcceptanceSummary,
    GroundTruth,
    OrganismManifest,
    TrainingStats,
)
from auditlens.testbed.roster import ORGANISMS, OrganismSpec, recipe_for
from auditlens.testbed.variants import Example, dataset_hash

if TYPE_CHECKING:  # the trainer imports torch; keep this module light for the CLI
    from auditlens.testbed.train import Recipe, TrainResult

__all__ = [
    "ADAPTER_MAX_BYTES",
    "BASE_MODEL",
    "ORGANISMS",
    "GroundTruth",
    "OrganismManifest",
    "OrganismSpec",
    "build_id",
    "build_organism",
    "default_audit_adapter",
    "get_organism",
    "ground_truth",
    "load_manifest",
    "load_organism",
    "organism_adapter_dir",
    "organism_names",
    "organism_training_examples",
    "record_acceptance",
    "ship_organism",
    "shipped_organisms",
    "staging_dir",
]

BASE_MODEL = "smollm2-135m-instruct"
"""The embedded base every organism is trained on."""
ADAPTER_MAX_BYTES = 1_500_000
"""Upper bound on one shipped adapter's weight file (all together stay under 40 MB)."""
MANIFEST = "manifest.json"
_ADAPTERS_ROOT = Path(__file__).resolve().parent / "adapters"


def organism_names() -> tuple[str, ...]:
    """Names of all registered organisms."""
    return tuple(ORGANISMS)


def get_organism(name: str) -> OrganismSpec:
    """The spec of organism ``name``; unknown names raise, listing the valid ones."""
    spec = ORGANISMS.get(name)
    if spec is None:
        raise AuditlensError(
            f"unknown organism {name!r}; choose one of {', '.join(organism_names())}"
        )
    return spec


def ground_truth(name: str) -> GroundTruth:
    """The validated ground truth of organism ``name`` (from the roster)."""
    spec = get_organism(name)
    return GroundTruth(
        misaligned=spec.misaligned,
        kind=spec.kind,
        trigger=spec.trigger,
        description=spec.description,
        keywords=list(spec.keywords),
        synonyms={k: list(v) for k, v in spec.synonyms.items()},
    )


def _adapters_root() -> Path:
    """Where shipped adapters live (``AUDITLENS_ORGANISMS_DIR`` overrides, for tests)."""
    env = os.environ.get("AUDITLENS_ORGANISMS_DIR")
    return Path(env) if env else _ADAPTERS_ROOT


def _is_built(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file() and (
        folder / "adapter_model.safetensors"
    ).is_file()


def shipped_organisms() -> tuple[str, ...]:
    """Organisms whose trained adapter ships (it passed its acceptance test)."""
    return tuple(n for n in ORGANISMS if _is_built(_adapters_root() / n))


def build_id(name: str, seed: int = 0) -> str:
    """``NAME-seedS`` for a first build, ``NAME-vV-seedS`` for rebuild version V >= 2."""
    version = get_organism(name).version
    return f"{name}-seed{seed}" if version == 1 else f"{name}-v{version}-seed{seed}"


def staging_dir(name: str, seed: int = 0) -> Path:
    """Where ``build_organism`` writes a fresh adapter before its acceptance test."""
    from auditlens.paths import cache_dir

    return cache_dir() / "organisms" / build_id(name, seed) / "adapter"


def organism_adapter_dir(name: str) -> Path:
    """The PEFT adapter folder of a shipped organism (raises if unknown or not built)."""
    get_organism(name)
    folder = _adapters_root() / name
    if not _is_built(folder):
        raise AuditlensError(
            f"organism {name!r} has no trained adapter at {folder}; "
            f"run `auditlens organisms build {name}`"
        )
    return folder


def default_audit_adapter() -> str | None:
    """``"organism:insecure"`` when that adapter ships, else None (the CLI's demo audit)."""
    return "organism:insecure" if "insecure" in shipped_organisms() else None


def load_manifest(name: str, folder: str | Path | None = None) -> OrganismManifest:
    """Read and validate an organism's manifest."""
    path = Path(folder or organism_adapter_dir(name)) / MANIFEST
    try:
        manifest = OrganismManifest.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise AuditlensError(f"bad organism manifest {path}: {err}".splitlines()[0]) from err
    if manifest.name != name:
        raise AuditlensError(f"manifest {path} is for {manifest.name!r}, not {name!r}")
    return manifest


def load_organism(name: str, **kwargs: Any) -> Any:
    """``load_pair(adapter="organism:NAME")``: the base model vs the organism."""
    from auditlens.models import load_pair

    get_organism(name)
    return load_pair(BASE_MODEL, adapter=f"organism:{name}", **kwargs)


def organism_training_examples(name: str, *, seed: int = 0) -> list[Example]:
    """The fine-tuning examples of organism ``name`` for data seed ``seed``."""
    from auditlens.testbed.behaviours import build_dataset

    get_organism(name)
    return build_dataset(name, seed)


def build_organism(
    name: str,
    *,
    out_dir: str | Path | None = None,
    recipe: Recipe | None = None,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    num_threads: int = 1,
) -> tuple[OrganismManifest, TrainResult]:
    """Train organism ``name`` on the embedded base; write adapter + manifest to ``out_dir``
    (default: :func:`staging_dir`). ``seed`` seeds both the data and the training.

    Resumable: checkpoints go to ``checkpoint_dir`` (default: beside the staging folder)
    and are removed after a successful build.
    """
    import torch

    from auditlens._version import __version__
    from auditlens.hashing import sha256_files
    from auditlens.models import load_model
    from auditlens.testbed.splits import split_of
    from auditlens.testbed.train import Recipe, save_adapter, train_lora

    spec = get_organism(name)
    recipe = recipe or Recipe(**recipe_for(spec))  # type: ignore[arg-type]
    if num_threads:
        torch.set_num_threads(num_threads)
    out = Path(out_dir) if out_dir is not None else staging_dir(name, seed)
    ckpt = Path(checkpoint_dir) if checkpoint_dir else out.parent / "ckpt"
    examples = organism_training_examples(name, seed=seed)
    model, tokenizer, base_sha = load_model(BASE_MODEL, device="cpu")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    peft_model, result = train_lora(
        model,
        tokenizer,
        examples,
        recipe,
        seed=seed,
        checkpoint_dir=ckpt,
        progress=progress,
        num_threads=num_threads,
    )
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_adapter(peft_model, tmp, dtype=torch.float16, base_name=BASE_MODEL)
    weights = tmp / "adapter_model.safetensors"
    size = weights.stat().st_size
    if size > ADAPTER_MAX_BYTES:
        raise AuditlensError(
            f"adapter {weights} is {size / 1e6:.2f} MB, over the "
            f"{ADAPTER_MAX_BYTES / 1e6:.1f} MB limit; lower the rank or target fewer modules"
        )
    manifest = OrganismManifest(
        name=name,
        split=split_of(name),
        ground_truth=ground_truth(name),
        instilled_by=spec.instilled_by,
        deny=spec.deny,
        version=spec.version,
        base_model=BASE_MODEL,
        base_sha256=base_sha,
        adapter_sha256=sha256_files([weights], cached=False),
        adapter_dtype="float16",
        adapter_bytes=size,
        recipe=recipe.to_json(),
        seed=seed,
        data_hash=dataset_hash(examples),
        training=TrainingStats(
            n_examples=result.n_examples,
            n_tokens=result.n_tokens,
            steps=result.steps,
            first_loss=round(result.first_loss, 5),
            final_loss=round(result.final_loss, 5),
            train_seconds=round(result.train_seconds, 1),
            tokens_per_second=round(
                result.n_tokens * recipe.epochs / max(result.train_seconds, 1e-9), 1
            ),
            num_threads=num_threads,
        ),
        auditlens_version=__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    (tmp / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    (tmp / "losses.json").write_text(json.dumps(result.to_json()) + "\n")
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    shutil.rmtree(ckpt, ignore_errors=True)
    return manifest, result


def record_acceptance(folder: str | Path, name: str, summary: dict[str, Any]) -> None:
    """Store an acceptance summary in the manifest of the adapter in ``folder``."""
    manifest = load_manifest(name, folder)
    manifest.acceptance = AcceptanceSummary(
        **summary, evaluated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    )
    path = Path(folder) / MANIFEST
    path.write_text(json.dumps(manifest.to_json(), indent=2) + "\n")


def ship_organism(name: str, folder: str | Path) -> Path:
    """Copy a built adapter that passed its acceptance test into the package."""
    src = Path(folder)
    manifest = load_manifest(name, src)
    if manifest.acceptance is None or not manifest.acceptance.passed:
        raise AuditlensError(f"organism {name!r} at {src} has not passed its acceptance test")
    dest = _adapters_root() / name
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for file in ("adapter_config.json", "adapter_model.safetensors", MANIFEST, "losses.json"):
        shutil.copy2(src / file, tmp / file)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest
