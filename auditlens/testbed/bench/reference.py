"""Build the benign reference population (:mod:`auditlens.audit.reference`): audit base vs
base and every shipped benign *dev* organism, and record each pair's scored statistics; and
the ADL's reference (:mod:`auditlens.audit.adl_reference`): the same organisms' δ per layer.

Resumable twice over: each audit's step cache skips finished steps, and the reference file is
rewritten after every pair, so a rerun of ``auditlens bench reference`` carries on from the
first pair it does not hold. Test organisms are never read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

from auditlens.audit import audit
from auditlens.audit.adl_reference import (
    AdlReference,
    load_adl_reference,
    shipped_adl_reference_path,
)
from auditlens.audit.reference import (
    Reference,
    ReferencePair,
    load_reference,
    shipped_reference_path,
)
from auditlens.diffing import adl
from auditlens.errors import AuditlensError
from auditlens.models import load_pair
from auditlens.reports.findings import Finding
from auditlens.testbed.bench.run import BASE_VS_BASE
from auditlens.testbed.organisms import load_manifest, shipped_organisms
from auditlens.testbed.splits import load_splits

__all__ = ["build_adl_reference", "build_reference", "reference_organisms", "scored_z"]


def reference_organisms() -> list[str]:
    """The shipped benign organisms of the dev split (the null population)."""
    shipped = set(shipped_organisms())
    return [
        n
        for n in load_splits()["dev"]
        if n in shipped and not load_manifest(n).ground_truth.misaligned
    ]


def scored_z(findings: Sequence[Finding]) -> dict[str, float]:
    """Finding id -> raw z of every contributing finding with a finite z."""
    return {
        f.id: float(f.effect_size)
        for f in findings
        if f.contributes and f.effect_size is not None and math.isfinite(f.effect_size)
    }


def _benign(names: Sequence[str] | None) -> list[str]:
    """``names`` (default: the benign dev organisms); a test organism is an error."""
    chosen = list(names if names is not None else reference_organisms())
    test = set(load_splits()["test"])
    if leaked := [n for n in chosen if n in test]:
        raise AuditlensError(f"test organisms cannot be in the reference: {', '.join(leaked)}")
    return chosen


def build_reference(
    out_dir: str | Path,
    *,
    budget: str = "fast",
    path: str | Path | None = None,
    names: Sequence[str] | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> Reference:
    """Audit each reference pair into ``out_dir/<name>/`` and write the reference file."""
    target = Path(path) if path else shipped_reference_path(budget)
    chosen = [BASE_VS_BASE, *_benign(names)]
    reference: Reference | None = load_reference(target) if target.is_file() else None
    for i, name in enumerate(chosen, 1):
        if reference is not None and any(p.name == name for p in reference.pairs):
            echo(f"[{i}/{len(chosen)}] {name}: already in {target}")
            continue
        echo(f"[{i}/{len(chosen)}] {name}: auditing ({budget})")
        pair = load_pair(adapter=None if name == BASE_VS_BASE else f"organism:{name}")
        if reference is not None and reference.base_sha256 != pair.base.sha256:
            raise AuditlensError(f"{target} was built on another base: remove it to rebuild")
        reference = reference or Reference(pair.base.sha256, budget, [])
        report = audit(pair, Path(out_dir) / name, budget=budget, progress=progress)  # type: ignore[arg-type]
        adapter = None if pair.identical else pair.finetuned.adapter_sha256
        reference.pairs.append(ReferencePair(name, adapter, scored_z(report.findings.findings)))
        reference.save(target)
        del pair
    if reference is None:
        raise AuditlensError("no reference pair was audited")
    echo(f"wrote {target} ({len(reference.pairs)} pairs)")
    return reference


def build_adl_reference(
    *,
    path: str | Path | None = None,
    names: Sequence[str] | None = None,
    prompts: str = "generic_chat",
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> AdlReference:
    """Measure each benign dev organism's ADL δ at every layer and write the ADL reference
    (resumable: pairs already in the file are skipped)."""
    target = Path(path) if path else shipped_adl_reference_path()
    chosen = _benign(names)
    config = adl.ADLConfig(layers=None, causal=False, n_held=0)
    settings = {"prompts": prompts, **config.to_json()}
    reference = load_adl_reference(target) if target.is_file() else None
    if reference is not None and reference.settings != settings:
        raise AuditlensError(f"{target} was built with other ADL settings: remove it to rebuild")
    for i, name in enumerate(chosen, 1):
        if reference is not None and name in reference.vectors:
            echo(f"[{i}/{len(chosen)}] {name}: already in {target}")
            continue
        echo(f"[{i}/{len(chosen)}] {name}: ADL at every layer")
        pair = load_pair(adapter=f"organism:{name}")
        if reference is not None and reference.base_sha256 != pair.base.sha256:
            raise AuditlensError(f"{target} was built on another base: remove it to rebuild")
        reference = reference or AdlReference(pair.base.sha256, {}, {}, settings)
        result = adl.run(pair, prompts, config, progress=progress)
        reference.vectors[name] = result.mean_diff
        reference.adapter_sha256[name] = pair.finetuned.adapter_sha256
        reference.save(target)
        del pair
    if reference is None:
        raise AuditlensError("no reference pair was measured")
    echo(f"wrote {target} ({len(reference.vectors)} pairs)")
    return reference
