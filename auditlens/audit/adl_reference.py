"""The ADL's benign reference: each benign fine-tune's mean activation difference, per layer.

The ADL reads δ with the span of these vectors removed (:mod:`auditlens.diffing.adl_specific`),
so that what every fine-tune of the base shares is not reported as what this one learnt. The
vectors come from the same population the score is standardised on (the testbed's benign *dev*
organisms), measured by the ADL on the generic prompts at every layer. When the audited pair is
one of them (matched by adapter content hash) it is left out.

File: safetensors, one ``[n_layers, d_model]`` tensor per pair (named by the pair) and string
metadata: ``format`` (``auditlens.adl_reference``), ``base_sha256``, the pairs' adapter hashes
and the ADL settings. Shipped as ``auditlens/data/reference_adl.safetensors`` when built
(``auditlens bench adl-reference``); a base it was not built on gets the raw readout and a
notice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor

from auditlens.diffing import adl, adl_specific
from auditlens.diffing.adl import ADLResult
from auditlens.errors import AuditlensError
from auditlens.hashing import sha256_file
from auditlens.models import ModelPair
from auditlens.reports.evidence import Evidence

__all__ = [
    "ADL_FORMAT",
    "BUILD_COMMAND",
    "AdlReference",
    "adl_evidence",
    "load_adl_reference",
    "read_specific",
    "shipped_adl_reference_path",
    "shipped_digest",
]

ADL_FORMAT = "auditlens.adl_reference"
BUILD_COMMAND = "auditlens bench adl-reference"


@dataclass
class AdlReference:
    """Benign fine-tunes' δ of one base: ``vectors[name]`` is ``[n_layers, d_model]``."""

    base_sha256: str
    vectors: dict[str, Tensor]
    adapter_sha256: dict[str, str | None]
    settings: dict[str, Any]
    """The ADL settings and prompts the vectors were measured with."""

    def directions(self, layer: int, leave_out: str | None = None) -> Float[Tensor, "n d_model"]:
        """The reference vectors at ``layer`` (``leave_out``: a pair name to exclude)."""
        chosen = [v for name, v in self.vectors.items() if name != leave_out]
        if not chosen:
            raise AuditlensError("the ADL reference holds no pair besides the audited one")
        if not all(0 <= layer < v.shape[0] for v in chosen):
            raise AuditlensError(f"layer {layer} is not in the ADL reference")
        return torch.stack([v[layer] for v in chosen])

    def member(self, adapter_sha256: str | None) -> str | None:
        """The name of the reference pair the audited adapter is (by content), if any."""
        if adapter_sha256 is None:
            return None
        return next((n for n, h in self.adapter_sha256.items() if h == adapter_sha256), None)

    def label(self) -> str:
        return f"{len(self.vectors)} benign fine-tunes' δ ({', '.join(sorted(self.vectors))})"

    def save(self, path: str | Path) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        metadata = {
            "format": ADL_FORMAT,
            "base_sha256": self.base_sha256,
            "adapter_sha256": json.dumps(self.adapter_sha256, sort_keys=True),
            "settings": json.dumps(self.settings, sort_keys=True),
        }
        tensors = {name: v.float().contiguous() for name, v in self.vectors.items()}
        save_file(tensors, str(out), metadata=metadata)
        return out


def load_adl_reference(path: str | Path) -> AdlReference:
    """Read an ADL reference file; anything else is a one-line error."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        if meta.get("format") != ADL_FORMAT:
            raise AuditlensError(f"{path} is not an auditlens ADL reference file")
        vectors = load_file(str(path))
        return AdlReference(
            base_sha256=meta["base_sha256"],
            vectors=vectors,
            adapter_sha256=json.loads(meta["adapter_sha256"]),
            settings=json.loads(meta["settings"]),
        )
    except (OSError, SafetensorError, KeyError, json.JSONDecodeError) as err:
        raise AuditlensError(f"cannot read ADL reference {path}: {err}") from err


def shipped_adl_reference_path() -> Path:
    """Where the ADL reference for the embedded base ships (it may not exist)."""
    return Path(__file__).resolve().parents[1] / "data" / "reference_adl.safetensors"


def shipped_digest() -> str | None:
    """Content hash of the shipped ADL reference (None: none ships): part of the diffing
    step's settings, so a rebuilt reference is a new step key."""
    path = shipped_adl_reference_path()
    return sha256_file(path) if path.is_file() else None


def read_specific(
    pair: ModelPair,
    result: ADLResult,
    settings: adl_specific.SpecificSettings,
    digest: str | None,
) -> tuple[adl_specific.SpecificReading | None, list[str]]:
    """The ADL read against the shipped reference when it was built on this base (``digest``:
    :func:`shipped_digest`), or None and the notice saying the ADL is read raw."""
    raw = "the ADL is read raw, so its words include what every fine-tune of the base shares"
    if digest is None:
        return None, [f"diffing: no ADL reference ships; {raw} (build one: {BUILD_COMMAND})"]
    reference = load_adl_reference(shipped_adl_reference_path())
    if reference.base_sha256 != pair.base.sha256:
        return None, [
            f"diffing: the shipped ADL reference was built on another base; {raw} "
            f"(build one on this base: {BUILD_COMMAND})"
        ]
    leave = reference.member(pair.finetuned.adapter_sha256)
    shared = {layer: reference.directions(layer, leave) for layer in result.layers}
    label = reference.label() + (f", {leave} itself left out" if leave else "")
    return adl_specific.run(result, pair, shared, settings, reference=label), []


def adl_evidence(
    pair: ModelPair,
    result: ADLResult,
    settings: adl_specific.SpecificSettings,
    digest: str | None,
    folder: Path,
    where: str,
) -> tuple[Evidence, bool]:
    """The ADL's evidence; with a reference for this base, the specific reading (saved into
    ``folder``) replaces the raw words as the hypothesis. The flag: it did."""
    raw = adl.evidence(result, where)
    reading, notices = read_specific(pair, result, settings, digest)
    if reading is None:
        return raw + Evidence(notices=notices), False
    reading.save(folder)
    kept = Evidence(findings=raw.findings, sections=raw.sections)
    return kept + adl_specific.evidence(reading, where), True
