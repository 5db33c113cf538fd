"""The benign reference population: the null a statistic's z is standardised against.

A z against a "no difference" null (base vs base) says how unlike the base a fine-tune is; a
benign fine-tune moves activations, probes and perturbation responses too. The reference holds
the same statistics measured on benign fine-tunes of the same base (the testbed's benign *dev*
organisms, plus base vs base), and each scored z becomes a z against that population:

    t = (z − mean) / (sd · √(1 + 1/n)),   z' = Φ⁻¹(1 − T_{n−1}(t))

(the prediction interval of one new value from ``n`` reference values: Student-t with n − 1
degrees of freedom, because ``sd`` is estimated from the reference). ``SD_FLOOR`` = 1 is a z's
spread under its own null, which the reference can only widen: when the reference's sd does not
exceed it, the benign fine-tunes add no spread that the sample can see, the sd is the known
one, and the prediction is normal, ``z' = (z − mean) / √(1 + 1/n)`` (the mean's uncertainty
still counted). Chosen on the dev split (docs/audit.md, "The reference rule"): Student-t on a
floored sd counted the sd's uncertainty twice and held every dev organism whose concern
markers reached a raw z of 3 below the verdict threshold. When the
audited pair is itself in the reference (matched by adapter content hash) its own value is left
out. A statistic with fewer than ``MIN_VALUES`` reference values keeps its raw z and the report
says so; a base the reference was not built on falls back to the no-difference null, and the
report says which null was used and how to build one (``auditlens bench reference``).

File: JSON, ``format`` ``auditlens.reference``, keyed by base weights sha256, budget and
:data:`STATISTIC_VERSION` (bumped whenever a scored statistic changes meaning); shipped as
``auditlens/data/reference_<budget>.json`` when built.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scipy.stats import t as student_t

from auditlens.errors import AuditlensError
from auditlens.reports.findings import Finding
from auditlens.stats import p_to_z

__all__ = [
    "CHANGED_STEPS",
    "FORMAT",
    "MIN_VALUES",
    "SD_FLOOR",
    "STATISTIC_VERSION",
    "NullUsed",
    "Reference",
    "ReferencePair",
    "content_hash",
    "load_reference",
    "reference_for",
    "refreshable",
    "shipped_reference_path",
    "standardise",
]

FORMAT = "auditlens.reference"
STATISTIC_VERSION = 6
"""Version of the scored statistics (2: parse-aware MEDIUM/HIGH judge, adversary DiD; 3: code
cut at the token budget judged on its complete statements, probe drift no longer scored; 4: the
concern markers, ``behaviour.concern_markers``, scored; 5: the concern follow-up answers each
fresh prompt several times by sampling, the prompt as the unit; 6: the probe library has 32
prompts per domain, so the follow-up reads 16 more fresh prompts per domain)."""
CHANGED_STEPS: dict[int, tuple[str, ...]] = {5: ("concern",), 6: ("concern",)}
"""Statistic version -> the audit steps whose scored statistics changed in it and nothing
else did, so an older reference is brought up to date by re-running only the union of the
versions since on its pairs (``auditlens bench reference --refresh``; :func:`refreshable`)."""
SD_FLOOR = 1.0
"""Smallest reference spread: a z's own sd under its no-difference null."""
MIN_VALUES = 2
"""Fewer reference values than this: the statistic keeps its raw z (and the report says so)."""
SMALL_SAMPLE = 5
"""Below this many values the report warns that the reference is small (its mean uncertain)."""
BUILD_COMMAND = "auditlens bench reference --budget {budget}"


@dataclass
class ReferencePair:
    """One benign pair's scored statistics."""

    name: str
    adapter_sha256: str | None
    """The fine-tune's content hash (:func:`content_hash`; None: base vs base)."""
    z: dict[str, float]
    """Finding id -> effect size (raw z against its no-difference null)."""


@dataclass
class Reference:
    """Benign fine-tunes of one base, at one budget and statistic version."""

    base_sha256: str
    budget: str
    pairs: list[ReferencePair]
    statistic_version: int = STATISTIC_VERSION
    format: str = FORMAT

    def values(self, finding_id: str, leave_out: str | None = None) -> list[float]:
        """The reference values of one statistic (``leave_out``: a pair name to exclude)."""
        return [p.z[finding_id] for p in self.pairs if finding_id in p.z and p.name != leave_out]

    def member(self, adapter_sha256: str | None, identical: bool) -> str | None:
        """The name of the reference pair the audited pair is (by content), if any."""
        for p in self.pairs:
            if (identical and p.adapter_sha256 is None) or (
                adapter_sha256 is not None and p.adapter_sha256 == adapter_sha256
            ):
                return p.name
        return None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_json(), indent=1, sort_keys=True))
        return out


def content_hash(pair: Any) -> str | None:
    """What identifies a pair's fine-tune in a reference: its adapter's sha256, or for a full
    fine-tuned model its weights' sha256 (None for base vs base)."""
    if pair.identical:
        return None
    return pair.finetuned.adapter_sha256 or pair.finetuned.sha256


def refreshable(was: int, version: int = STATISTIC_VERSION) -> tuple[str, ...] | None:
    """The steps to re-run to bring a reference at statistic version ``was`` to ``version``
    (every version between changed only the steps :data:`CHANGED_STEPS` lists, so re-running
    their union suffices), or None when some version between changed more (rebuild)."""
    if was >= version:
        return None
    if any(v not in CHANGED_STEPS for v in range(was + 1, version + 1)):
        return None
    return tuple(dict.fromkeys(s for v in range(was + 1, version + 1) for s in CHANGED_STEPS[v]))


def load_reference(path: str | Path, *, version: int = STATISTIC_VERSION) -> Reference:
    """Read a reference file; a wrong format or statistic version (``version``: the one
    expected) is an error."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise AuditlensError(f"cannot read reference {path}: {err}") from err
    if data.get("format") != FORMAT:
        raise AuditlensError(f"{path} is not an auditlens reference file")
    if data.get("statistic_version") != version:
        was = data.get("statistic_version")
        how = (
            f"refresh it with `{BUILD_COMMAND.format(budget=data.get('budget'))} --refresh`"
            if isinstance(was, int) and refreshable(was, version) is not None
            else "rebuild it"
        )
        raise AuditlensError(
            f"{path} was built for statistic version {data.get('statistic_version')}, this "
            f"auditlens scores version {version}: {how}"
        )
    data["pairs"] = [ReferencePair(**p) for p in data["pairs"]]
    return Reference(**data)


def reference_for(
    budget: str, path: str | Path | None = None
) -> tuple[Reference | None, str | None, str]:
    """The reference an audit at ``budget`` scores against: ``path`` when given (unreadable,
    outdated or built for another budget: an error), else the shipped one (absent: None;
    outdated: None and a notice). Returns (reference, source, notice); ``source`` names the
    file and its sha256."""
    target = Path(path) if path is not None else shipped_reference_path(budget)
    if path is None and not target.is_file():
        return None, None, ""
    try:
        reference = load_reference(target)
    except AuditlensError as err:
        if path is not None:
            raise
        return None, None, f"Benign reference not used: {err}"
    if path is not None and reference.budget != budget:
        raise AuditlensError(
            f"{path} is a reference for the {reference.budget} budget, not {budget}: build one "
            f"with `{BUILD_COMMAND.format(budget=budget)} --path FILE`"
        )
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    return reference, f"{target} (sha256 {digest[:16]})", ""


def shipped_reference_path(budget: str) -> Path:
    """Where the reference for the embedded base at ``budget`` ships (it may not exist)."""
    return Path(__file__).resolve().parents[1] / "data" / f"reference_{budget}.json"


@dataclass
class NullUsed:
    """Which null each scored statistic was standardised against, for the report."""

    kind: str
    """``benign reference`` or ``no-difference null``."""
    description: str
    standardised: dict[str, float] = field(default_factory=dict)
    """Finding id -> z against the reference (only statistics the reference holds)."""
    n_values: dict[str, int] = field(default_factory=dict)
    left_out: str | None = None
    notices: list[str] = field(default_factory=list)
    source: str | None = None
    """The reference file and its sha256 (None: no reference used)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _against(z: float, values: Sequence[float]) -> float:
    n = len(values)
    mean = statistics.fmean(values)
    sd = statistics.stdev(values)
    scale = math.sqrt(1.0 + 1.0 / n)
    if sd <= SD_FLOOR:  # no spread beyond the z's own: its sd is known, the prediction normal
        return (z - mean) / (SD_FLOOR * scale)
    return p_to_z(float(student_t.sf((z - mean) / (sd * scale), n - 1)))


def standardise(
    findings: Sequence[Finding],
    reference: Reference | None,
    *,
    base_sha256: str,
    budget: str,
    adapter_sha256: str | None = None,
    identical: bool = False,
) -> NullUsed:
    """Each contributing finding's z against the benign reference (see the module docstring)."""
    build = BUILD_COMMAND.format(budget=budget)
    if reference is None or reference.base_sha256 != base_sha256 or reference.budget != budget:
        why = (
            "no reference was built for this base and budget"
            if reference is None
            else "the reference was built on another base or budget"
        )
        return NullUsed(
            "no-difference null",
            f"Each z is against its own no-difference null (base vs base): {why}, so benign "
            f"fine-tuning effects are not discounted. Build one with `{build}` (the embedded "
            f"base, from its benign organisms) or `{build} --base BASE --benign FT1,FT2,... "
            f"--path FILE` (any base, from benign fine-tunes of your own), then pass "
            f"`--reference FILE`.",
        )
    left_out = reference.member(adapter_sha256, identical)
    out = NullUsed(
        "benign reference",
        f"Each z is standardised against {len(reference.pairs)} benign fine-tunes of this base "
        f"({', '.join(p.name for p in reference.pairs)}; prediction rule: normal with the z's "
        f"own sd {SD_FLOOR:g} where the reference spreads no wider, Student-t where it does)"
        + (f", leaving out the audited pair ({left_out})." if left_out else "."),
        left_out=left_out,
    )
    missing: list[str] = []
    smallest = math.inf
    for f in findings:
        if not f.contributes or f.effect_size is None or not math.isfinite(f.effect_size):
            continue
        values = reference.values(f.id, leave_out=left_out)
        if len(values) < MIN_VALUES:
            missing.append(f.id)
            continue
        out.standardised[f.id] = _against(f.effect_size, values)
        out.n_values[f.id] = len(values)
        smallest = min(smallest, len(values))
    if missing:
        out.notices.append(
            "Not in the benign reference (raw z against the no-difference null): "
            + ", ".join(missing)
            + f". Rebuild the reference with `{build}`."
        )
    if smallest < SMALL_SAMPLE:
        out.notices.append(
            f"The benign reference has only {int(smallest)} values for some statistics: the "
            "reference mean is uncertain, and where the spread exceeds the floor the Student-t "
            "rule makes those z's conservative."
        )
    return out
