"""Latent interpretation for any dictionary: crosscoders, diff-SAEs, plain SAEs.

For chosen latents over an activation store: top-activating contexts, firing frequency and a
histogram of activation values, the decoder direction's logit effects through each model's
unembedding, and how the latent differs between the models:

- crosscoder: each model's additive share of the pre-activation (``pre = base + ft + b``);
- SAE on one model's activations: its mean activation on base vs fine-tuned inputs;
- diff-SAE: each model's activation projected onto the unit decoder direction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor

from auditlens.diffing.crosscoder_model import MODEL_NAMES, Crosscoder
from auditlens.errors import AuditlensError, StoreError
from auditlens.lens import logit_lens, top_tokens
from auditlens.models import ModelPair
from auditlens.progress import progress_bar
from auditlens.store import ActivationStore

__all__ = [
    "CrosscoderDictionary",
    "Dictionary",
    "LatentInfo",
    "LatentReport",
    "SAEDictionary",
    "as_dictionary",
    "interpret_latents",
]

InputKind = Literal["diff", "base", "finetuned"]


class Dictionary(Protocol):
    """What :func:`interpret_latents` needs from a sparse dictionary."""

    @property
    def n_latents(self) -> int: ...

    @property
    def sites(self) -> list[str]: ...

    kind: str
    model_activation_kind: str

    def encode(self, pairs: Float[Tensor, "n n_sites 2 d_model"]) -> Float[Tensor, "n n_latents"]:
        """Latent activations of raw paired activations."""
        ...

    def decoder_directions(self) -> dict[str, Float[Tensor, "n_latents d_model"]]:
        """Decoder vectors keyed by the model whose unembedding reads them."""
        ...

    def model_activation(
        self, pairs: Float[Tensor, "n n_sites 2 d_model"]
    ) -> dict[str, Float[Tensor, "n n_latents"]]:
        """A per-model measure of each latent (see ``model_activation_kind``)."""
        ...


class CrosscoderDictionary:
    """A crosscoder seen as a dictionary (decoders at its last site by default)."""

    kind = "crosscoder"
    model_activation_kind = "encoder contribution to the pre-activation"

    def __init__(self, crosscoder: Crosscoder, site: int | str = -1) -> None:
        self.crosscoder = crosscoder
        self.site_index = crosscoder.site_index(site)

    @property
    def n_latents(self) -> int:
        return self.crosscoder.n_latents

    @property
    def sites(self) -> list[str]:
        return self.crosscoder.sites

    def encode(self, pairs: Tensor) -> Tensor:
        return self.crosscoder.encode(pairs)

    def decoder_directions(self) -> dict[str, Tensor]:
        return self.crosscoder.decoder_directions(self.site_index)

    def model_activation(self, pairs: Tensor) -> dict[str, Tensor]:
        return self.crosscoder.model_contributions(pairs)


class SAEDictionary:
    """An sae-lens SAE reading one site: of ``h_ft - h_base`` (diff) or of one model."""

    kind = "sae"

    def __init__(self, sae: Any, site: str, input_kind: InputKind = "diff") -> None:
        if input_kind not in ("diff", "base", "finetuned"):
            raise AuditlensError(
                f"unknown SAE input kind {input_kind!r}; use diff, base or finetuned"
            )
        self.sae = sae
        self.site = site
        self.input_kind = input_kind
        self.kind = "diff_sae" if input_kind == "diff" else "sae"
        self.model_activation_kind = (
            "projection onto the unit decoder direction"
            if input_kind == "diff"
            else "SAE activation on that model's activations"
        )

    @property
    def n_latents(self) -> int:
        return int(self.sae.cfg.d_sae)

    @property
    def sites(self) -> list[str]:
        return [self.site]

    def _inputs(self, pairs: Tensor) -> Tensor:
        x = pairs[:, 0] if pairs.dim() == 4 else pairs
        if self.input_kind == "diff":
            return x[:, 1] - x[:, 0]
        return x[:, 0] if self.input_kind == "base" else x[:, 1]

    @torch.no_grad()
    def encode(self, pairs: Tensor) -> Tensor:
        return self.sae.encode(self._inputs(pairs).to(self.sae.W_enc.dtype))

    def decoder_directions(self) -> dict[str, Tensor]:
        key = "finetuned" if self.input_kind == "diff" else self.input_kind
        return {key: self.sae.W_dec.detach().float().cpu()}

    @torch.no_grad()
    def model_activation(self, pairs: Tensor) -> dict[str, Tensor]:
        x = pairs[:, 0] if pairs.dim() == 4 else pairs
        x = x.to(self.sae.W_enc.dtype)
        if self.input_kind == "diff":
            w = self.sae.W_dec.detach()
            unit = w / w.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            return {name: x[:, m] @ unit.t() for m, name in enumerate(MODEL_NAMES)}
        return {name: self.sae.encode(x[:, m]) for m, name in enumerate(MODEL_NAMES)}


def as_dictionary(obj: Any, *, site: str | None = None, input_kind: InputKind = "diff") -> Any:
    """A :class:`Dictionary` from a crosscoder, a diff-SAE result or an sae-lens SAE."""
    if isinstance(obj, Crosscoder):
        return CrosscoderDictionary(obj)
    if hasattr(obj, "dictionary") and callable(obj.dictionary):
        return obj.dictionary()
    if hasattr(obj, "crosscoder") and isinstance(obj.crosscoder, Crosscoder):
        return CrosscoderDictionary(obj.crosscoder)
    if hasattr(obj, "encode") and hasattr(obj, "W_dec") and hasattr(obj, "cfg"):
        if site is None:
            raise AuditlensError("an sae-lens SAE needs the site it reads (site=...)")
        return SAEDictionary(obj, site, input_kind)
    if hasattr(obj, "encode") and hasattr(obj, "decoder_directions"):
        return obj
    raise AuditlensError(f"{type(obj).__name__} is not a dictionary (crosscoder, diff-SAE or SAE)")


@dataclass
class LatentInfo:
    """What one latent responds to and writes, and how it differs between the models."""

    latent: int
    frequency: float
    mean_activation: float
    """Mean over tokens where the latent fires."""
    max_activation: float
    histogram: dict[str, list[float]]
    top_contexts: list[dict[str, Any]]
    logit_effects: dict[str, dict[str, list[tuple[str, float]]]]
    model_activation: dict[str, float]
    """Mean per-model measure over tokens where the latent fires."""
    activation_difference: float
    """``model_activation["finetuned"] - model_activation["base"]``."""


@dataclass
class LatentReport:
    """Interpretation of chosen latents of one dictionary over one store."""

    kind: str
    model_activation_kind: str
    sites: list[str]
    n_tokens: int
    latents: list[LatentInfo]
    frequency: Tensor
    """Firing frequency of every latent."""
    notices: list[str] = field(default_factory=list)

    def get(self, latent: int) -> LatentInfo:
        for info in self.latents:
            if info.latent == latent:
                return info
        raise AuditlensError(f"latent {latent} was not interpreted in this report")

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "model_activation_kind": self.model_activation_kind,
            "sites": self.sites,
            "n_tokens": self.n_tokens,
            "n_latents": int(self.frequency.numel()),
            "dead_fraction": float((self.frequency == 0).float().mean()),
            "latents": [asdict(info) for info in self.latents],
            "notices": self.notices,
        }

    def save(self, directory: str | Path) -> Path:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        save_file({"frequency": self.frequency.contiguous()}, str(out / "latents.safetensors"))
        (out / "latents.json").write_text(json.dumps(self.to_json(), indent=1))
        return out

    @classmethod
    def load(cls, directory: str | Path) -> LatentReport:
        """Read a report written by :meth:`save`."""
        path = Path(directory)
        try:
            meta = json.loads((path / "latents.json").read_text())
            frequency = load_file(str(path / "latents.safetensors"))["frequency"]
            infos = []
            for raw in meta["latents"]:
                info = dict(raw)
                info["logit_effects"] = {
                    key: {kind: [tuple(t) for t in toks] for kind, toks in lists.items()}
                    for key, lists in info["logit_effects"].items()
                }
                infos.append(LatentInfo(**info))
        except (OSError, KeyError, TypeError, ValueError) as err:
            raise AuditlensError(f"{path} holds no readable latent report: {err}") from err
        return cls(
            meta["kind"], meta["model_activation_kind"], list(meta["sites"]),
            int(meta["n_tokens"]), infos, frequency, list(meta.get("notices", [])),
        )  # fmt: skip


def _store_batches(store: ActivationStore, sites: list[str], batch_size: int) -> Iterator[Tensor]:
    iters = [store.iter_batches(s, batch_size) for s in sites]
    for parts in zip(*iters, strict=True):
        yield torch.stack(parts, dim=1)


@torch.no_grad()
def interpret_latents(
    dictionary: Any,
    store: ActivationStore,
    latents: Sequence[int] | None = None,
    *,
    pair: ModelPair | None = None,
    tokenizer: Any = None,
    top_n: int = 10,
    window: int = 8,
    bins: int = 20,
    n_logit_tokens: int = 10,
    batch_size: int = 2048,
    max_tokens: int | None = None,
    site: str | None = None,
    input_kind: InputKind = "diff",
    progress: bool = True,
) -> LatentReport:
    """Contexts, frequencies, histograms, logit effects and model differences of latents.

    ``latents`` defaults to the 20 most frequent. ``pair`` (for the unembeddings and the
    tokenizer) enables logit effects; without it they are left empty. ``site`` and
    ``input_kind`` are only needed for a bare sae-lens SAE.
    """
    d = as_dictionary(dictionary, site=site, input_kind=input_kind)
    sites = list(d.sites)
    if not sites:
        raise AuditlensError("the dictionary does not say which sites it reads")
    for s in sites:
        if s not in store.sites:
            raise StoreError(f"site {s!r} was not harvested; this store has {store.sites}")
    tokenizer = tokenizer if tokenizer is not None else (pair.tokenizer if pair else None)
    n_lat = int(d.n_latents)
    fired = torch.zeros(n_lat)
    n_total = min(store.n_tokens, max_tokens) if max_tokens else store.n_tokens
    chosen: list[int] | None = list(latents) if latents is not None else None
    if chosen is not None and any(not 0 <= i < n_lat for i in chosen):
        raise AuditlensError(f"latent ids must be in 0..{n_lat - 1}")
    if chosen is None:  # first pass: frequencies to pick the most frequent latents
        seen = 0
        for batch in _store_batches(store, sites, batch_size):
            batch = batch[: n_total - seen]
            fired += (d.encode(batch) > 0).sum(0).float().cpu()
            seen += batch.shape[0]
            if seen >= n_total:
                break
        chosen = torch.argsort(fired, descending=True)[:20].tolist()
        fired.zero_()
    idx = torch.tensor(chosen, dtype=torch.long)
    k = len(chosen)
    best_vals = torch.full((k, top_n), -1.0)
    best_rows = torch.full((k, top_n), -1, dtype=torch.long)
    values: list[list[Tensor]] = [[] for _ in range(k)]
    sums = torch.zeros(k, dtype=torch.float64)
    model_sums = {name: torch.zeros(k, dtype=torch.float64) for name in MODEL_NAMES}
    offset = 0
    with progress_bar(n_total, "interpret latents", enabled=progress) as advance:
        for batch in _store_batches(store, sites, batch_size):
            batch = batch[: n_total - offset]
            acts = d.encode(batch).float().cpu()
            fired += (acts > 0).sum(0).float()
            sel = acts[:, idx]  # [n, k]
            active = sel > 0
            sums += (sel * active).sum(0).double()
            per_model = d.model_activation(batch)
            for name in MODEL_NAMES:
                if name in per_model:
                    vals = per_model[name].float().cpu()[:, idx]
                    model_sums[name] += (vals * active).sum(0).double()
            for j in range(k):
                nz = sel[:, j][active[:, j]]
                if nz.numel():
                    values[j].append(nz)
            rows = torch.arange(offset, offset + batch.shape[0])
            cand_v = torch.cat([best_vals, sel.t()], dim=1)
            cand_r = torch.cat([best_rows, rows.expand(k, -1)], dim=1)
            top = torch.topk(cand_v, min(top_n, cand_v.shape[1]), dim=1)
            best_vals, best_rows = top.values, torch.gather(cand_r, 1, top.indices)
            offset += batch.shape[0]
            advance(batch.shape[0])
            if offset >= n_total:
                break
    frequency = fired / max(offset, 1)
    effects: dict[str, Tensor] = {}
    notices = []
    if pair is not None:
        sides = {s.name: s for s in pair.sides}
        for key, dirs in d.decoder_directions().items():
            effects[key] = logit_lens(sides[key], dirs[idx].float())
    else:
        notices.append("no model pair given: logit effects were not computed")
    infos = []
    for j, latent in enumerate(chosen):
        nz = torch.cat(values[j]) if values[j] else torch.zeros(0)
        n_fire = int(nz.numel())
        hi = float(nz.max()) if n_fire else 0.0
        counts = (
            torch.histc(nz, bins=bins, min=0.0, max=max(hi, 1e-9)) if n_fire else torch.zeros(bins)
        )
        edges = torch.linspace(0.0, max(hi, 1e-9), bins + 1)
        contexts = _contexts(store, best_vals[j], best_rows[j], window, tokenizer)
        logit = {}
        for key, lg in effects.items():
            promoted, suppressed = top_tokens(lg[j], tokenizer, n_logit_tokens)
            logit[key] = {"promoted": promoted, "suppressed": suppressed}
        per_model = {name: float(model_sums[name][j]) / max(n_fire, 1) for name in MODEL_NAMES}
        infos.append(
            LatentInfo(
                latent=latent,
                frequency=float(frequency[latent]),
                mean_activation=float(sums[j]) / max(n_fire, 1),
                max_activation=hi,
                histogram={"edges": edges.tolist(), "counts": counts.tolist()},
                top_contexts=contexts,
                logit_effects=logit,
                model_activation=per_model,
                activation_difference=per_model["finetuned"] - per_model["base"],
            )
        )
    return LatentReport(d.kind, d.model_activation_kind, sites, offset, infos, frequency, notices)


def _contexts(
    store: ActivationStore, vals: Tensor, rows: Tensor, window: int, tokenizer: Any
) -> list[dict[str, Any]]:
    keep = [
        (float(v), int(r))
        for v, r in zip(vals.tolist(), rows.tolist(), strict=True)
        if v > 0 and r >= 0
    ]
    if not keep:
        return []
    ctxs = store.contexts([r for _, r in keep], window=window, tokenizer=tokenizer)
    out = []
    for (v, r), c in zip(keep, ctxs, strict=True):
        item: dict[str, Any] = {
            "value": v,
            "row": r,
            "prompt_index": c.prompt_index,
            "position": c.position,
            "token_id": c.token_ids[c.focus],
        }
        if c.pieces is not None:
            item["token"] = c.pieces[c.focus]
            item["text"] = c.render()
        out.append(item)
    return out
