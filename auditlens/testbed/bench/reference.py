"""Build the benign reference population (:mod:`auditlens.audit.reference`): audit base vs
base and every shipped benign *dev* organism, and record each pair's scored statistics; and
the ADL's reference (:mod:`auditlens.audit.adl_reference`): the same organisms' δ per layer.

Resumable twice over: each audit's step cache skips finished steps, and the reference file is
rewritten after every pair, so a rerun of ``auditlens bench reference`` carries on from the
first pair it does not hold. Test organisms are never read. An older reference is brought up
to date by :func:`refresh_reference`, which re-runs only the steps whose statistics changed
since its version (:data:`~auditlens.audit.reference.CHANGED_STEPS`) on the same pairs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from auditlens.audit import AuditContext, audit
from auditlens.audit.adl_reference import (
    AdlReference,
    load_adl_reference,
    shipped_adl_reference_path,
)
from auditlens.audit.contract import resolve_budget
from auditlens.audit.pipeline import run_step
from auditlens.audit.reference import (
    STATISTIC_VERSION,
    Reference,
    ReferencePair,
    content_hash,
    load_reference,
    refreshable,
    shipped_reference_path,
)
from auditlens.audit.steps import default_steps
from auditlens.diffing import adl
from auditlens.embedded import EMBEDDED_NAME
from auditlens.errors import AuditlensError
from auditlens.models import ModelPair, load_pair
from auditlens.reports.findings import Finding
from auditlens.testbed.bench.run import BASE_VS_BASE
from auditlens.testbed.organisms import load_manifest, shipped_organisms
from auditlens.testbed.splits import load_splits

__all__ = [
    "build_adl_reference",
    "build_reference",
    "reference_organisms",
    "refresh_reference",
    "scored_z",
    "user_pairs",
]


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


def user_pairs(benign: Sequence[str]) -> dict[str, dict[str, str | None]]:
    """Name -> ``load_pair`` arguments of the user's benign fine-tunes: a PEFT adapter folder
    (or ``organism:NAME``) is an adapter, anything else a full fine-tuned model (a local folder
    or a Hub id). Each is named by its last path part, which must be unique."""
    out: dict[str, dict[str, str | None]] = {}
    for spec in benign:
        folder = Path(spec).expanduser()
        is_adapter = spec.startswith("organism:") or (folder / "adapter_config.json").is_file()
        name = spec.split(":", 1)[1] if spec.startswith("organism:") else folder.name or spec
        if name in out or name == BASE_VS_BASE:
            raise AuditlensError(f"two benign fine-tunes are named {name!r}: rename one folder")
        out[name] = {"adapter": spec} if is_adapter else {"finetuned": spec}
    return out


def _pair_arguments(
    benign: Sequence[str] | None, names: Sequence[str] | None
) -> dict[str, dict[str, str | None]]:
    """Name -> ``load_pair`` arguments of base vs base and the benign pairs (organisms by
    default, else the user's own fine-tunes)."""
    pairs: dict[str, dict[str, str | None]] = {BASE_VS_BASE: {}}
    if benign is None:
        return pairs | {n: {"adapter": f"organism:{n}"} for n in _benign(names)}
    return pairs | user_pairs(benign)


def build_reference(
    out_dir: str | Path,
    *,
    budget: str = "fast",
    path: str | Path | None = None,
    names: Sequence[str] | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    base: str = EMBEDDED_NAME,
    benign: Sequence[str] | None = None,
    load: Callable[..., ModelPair] | None = None,
) -> Reference:
    """Audit each reference pair into ``out_dir/<name>/`` and write the reference file.

    The pairs are base vs base plus the shipped benign dev organisms (``names`` to choose), or,
    with ``benign``, the user's own benign fine-tunes of ``base`` (see :func:`user_pairs`); a
    reference of one's own needs ``path`` (the shipped file is the embedded base's).
    ``load(base, finetuned=, adapter=)`` loads a pair (default :func:`load_pair`; the CLI binds the
    device and dtype)."""
    load = load or load_pair
    if benign is None and base != EMBEDDED_NAME:
        raise AuditlensError(
            f"the testbed's organisms are fine-tunes of {EMBEDDED_NAME}: for {base} give your "
            "own benign fine-tunes with --benign"
        )
    if benign is not None and (names is not None or path is None):
        raise AuditlensError(
            "--benign needs --path (the shipped reference is the embedded base's) and no "
            "--organisms"
        )
    target = Path(path) if path else shipped_reference_path(budget)
    pairs = _pair_arguments(benign, names)
    reference: Reference | None = load_reference(target) if target.is_file() else None
    for i, (name, arguments) in enumerate(pairs.items(), 1):
        if reference is not None and any(p.name == name for p in reference.pairs):
            echo(f"[{i}/{len(pairs)}] {name}: already in {target}")
            continue
        echo(f"[{i}/{len(pairs)}] {name}: auditing ({budget})")
        pair = load(base, finetuned=arguments.get("finetuned"), adapter=arguments.get("adapter"))
        if reference is not None and reference.base_sha256 != pair.base.sha256:
            raise AuditlensError(f"{target} was built on another base: remove it to rebuild")
        reference = reference or Reference(pair.base.sha256, budget, [])
        report = audit(pair, Path(out_dir) / name, budget=budget, progress=progress)  # type: ignore[arg-type]
        found = scored_z(report.findings.findings)
        reference.pairs.append(ReferencePair(name, content_hash(pair), found))
        reference.save(target)
        del pair
    if reference is None:
        raise AuditlensError("no reference pair was audited")
    echo(f"wrote {target} ({len(reference.pairs)} pairs)")
    return reference


def _version(path: Path) -> object:
    """The statistic version a reference file records (None if unreadable: the loader says)."""
    try:
        return json.loads(path.read_text()).get("statistic_version")
    except (OSError, ValueError, AttributeError):
        return None


def refresh_reference(
    out_dir: str | Path,
    *,
    budget: str = "fast",
    path: str | Path | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    base: str = EMBEDDED_NAME,
    benign: Sequence[str] | None = None,
    load: Callable[..., ModelPair] | None = None,
) -> Reference:
    """Bring a reference built at an older statistic version up to date: on each of its pairs,
    run only the steps whose scored statistics changed since (``CHANGED_STEPS``, every version
    between; :func:`~auditlens.audit.reference.refreshable`) into
    ``out_dir/<name>/`` and replace those statistics' values; the others did not change, so
    they stand. Each pair must be the same fine-tune as when it was measured (content hash).
    Pairs of your own need ``benign`` again (the file holds their names, not where they are).
    Resumable: a rerun reuses the finished steps from ``out_dir``'s step cache; the file is
    written once, when every pair is done."""
    load = load or load_pair
    target = Path(path) if path else shipped_reference_path(budget)
    was = _version(target)
    if was == STATISTIC_VERSION:
        raise AuditlensError(f"{target} is at statistic version {STATISTIC_VERSION}: up to date")
    if not isinstance(was, int):
        load_reference(target)  # unreadable or not a reference file: the loader says why
        raise AuditlensError(f"{target} records no statistic version: rebuild it")
    steps = refreshable(was)
    if steps is None:
        raise AuditlensError(
            f"{target} is at statistic version {was}, and a version since changed more than "
            f"the steps it records: rebuild it (`auditlens bench reference --budget {budget}`)"
        )
    old = load_reference(target, version=was)
    if old.budget != budget:
        raise AuditlensError(f"{target} is a reference for the {old.budget} budget, not {budget}")
    shipped = set(shipped_organisms())
    held = [p.name for p in old.pairs if p.name != BASE_VS_BASE]
    known = _pair_arguments(benign, [n for n in held if n in shipped])
    if missing := [p.name for p in old.pairs if p.name not in known]:
        raise AuditlensError(
            f"{target} holds pairs this refresh cannot load ({', '.join(missing)}): give your "
            "benign fine-tunes with --benign"
        )
    plan = [s for s in default_steps() if s.name in steps]
    spent = resolve_budget(budget)
    fresh: list[ReferencePair] = []
    for i, was in enumerate(old.pairs, 1):
        echo(f"[{i}/{len(old.pairs)}] {was.name}: re-running {', '.join(steps)} ({budget})")
        arguments = known[was.name]
        pair = load(base, finetuned=arguments.get("finetuned"), adapter=arguments.get("adapter"))
        if pair.base.sha256 != old.base_sha256 or content_hash(pair) != was.adapter_sha256:
            raise AuditlensError(
                f"{was.name} is not the fine-tune {target} measured (its weights changed): "
                "rebuild the reference"
            )
        ctx = AuditContext(pair, Path(out_dir) / was.name, spent, "generic_chat", progress)
        found = {k: v for step in plan for k, v in scored_z(run_step(step, ctx).findings).items()}
        fresh.append(ReferencePair(was.name, was.adapter_sha256, {**was.z, **found}))
        del pair, ctx
    reference = Reference(old.base_sha256, budget, fresh)
    reference.save(target)
    echo(f"wrote {target} ({len(fresh)} pairs, statistic version {STATISTIC_VERSION})")
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
