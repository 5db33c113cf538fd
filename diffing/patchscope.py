"""Patchscope: what a model says a vector is, by patching it into a token-identity prompt.

The identity prompt (``"cat -> cat\\n1135 -> 1135\\nhello -> hello\\n?"``) makes the model repeat
the token it was last shown; the residual stream at the final ``?`` is overwritten at one layer
by ``scale · ||h|| · v/||v||`` (``||h||``: the layer's mean activation norm) and the next-token
distribution is read. Unlike the logit lens it reads a mid-layer state the way the model itself
does. The reading is swept over scales, and each scale is compared with random vectors of the
same norm patched the same way (the null): a token counts at a scale only when the vector gives
it more probability than every random vector does.

Face: ``run(side, tokenizer, arch, vector, layer, norm, PatchscopeSettings()) ->
PatchscopeReading`` and ``words(reading)``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from auditlens.errors import AuditlensError
from auditlens.hooks import attach_edit, hooks_removed
from auditlens.lens import readable_words
from auditlens.models import ModelSide
from auditlens.sites import ArchSpec, model_dims, parse_site
from auditlens.stats import random_directions

__all__ = ["IDENTITY_PROMPT", "PatchscopeReading", "PatchscopeSettings", "run", "words"]

IDENTITY_PROMPT = "cat -> cat\n1135 -> 1135\nhello -> hello\n?"


@dataclass(frozen=True)
class PatchscopeSettings:
    """The prompt, the scale sweep and the null."""

    prompt: str = IDENTITY_PROMPT
    """Target prompt; its last token is overwritten."""
    scales: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    """Patched norms, in units of the layer's mean activation norm."""
    n_random: int = 8
    """Random vectors of equal norm per scale (the null)."""
    top_k: int = 20
    """Tokens kept per reading."""
    min_scales: int = 2
    """A word must beat the null at this many scales to be reported."""
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.scales or min(self.scales) <= 0:
            raise AuditlensError("patchscope scales must be positive")
        if self.n_random < 1 or self.top_k < 1 or self.min_scales < 1:
            raise AuditlensError("n_random, top_k and min_scales must be >= 1")


@dataclass
class PatchscopeReading:
    """Per scale: the vector's top tokens, the random vectors' and those beating them."""

    layer: int
    norm: float
    """Mean activation norm at the layer (what ``scales`` multiply)."""
    scales: list[float]
    tokens: list[list[tuple[str, float]]]
    """Per scale: the vector's top tokens with their probabilities."""
    random_tokens: list[list[tuple[str, float]]]
    """Per scale: the random vectors' top tokens (highest probability over the vectors)."""
    beats_null: list[list[str]]
    """Per scale: the vector's top tokens whose probability exceeds every random vector's."""
    settings: PatchscopeSettings = field(default_factory=PatchscopeSettings)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _top(probs: Tensor, tokenizer: Any, k: int) -> list[tuple[str, float]]:
    top = torch.topk(probs, min(k, probs.numel()))
    return [(str(tokenizer.decode([int(i)])), float(p)) for p, i in zip(*top, strict=True)]


@torch.no_grad()
def run(
    side: ModelSide,
    tokenizer: Any,
    arch: ArchSpec,
    vector: Float[Tensor, " d_model"],
    layer: int,
    norm: float,
    settings: PatchscopeSettings | None = None,
) -> PatchscopeReading:
    """Patch ``vector`` (and random vectors of its patched norm) into the identity prompt's
    last position at ``layer`` (``resid_post``), for every scale."""
    s = settings or PatchscopeSettings()
    if norm <= 0 or not torch.isfinite(vector).all():
        raise AuditlensError("patchscope needs a positive layer norm and a finite vector")
    d = vector.numel()
    unit = vector.double() / vector.double().norm() if float(vector.norm()) > 0 else None
    rows: list[Tensor] = []
    for scale in s.scales:
        target = scale * norm
        rows.append(unit * target if unit is not None else torch.zeros(d, dtype=torch.float64))
        rows += list(random_directions(s.n_random, d, target, seed=s.seed).double())
    patches = torch.stack(rows)
    ids = tokenizer(s.prompt, return_tensors="pt")["input_ids"]
    with side.active():
        root = side.hf
        p = next(root.parameters())
        batch = ids.to(p.device).expand(patches.shape[0], -1)
        new = patches.to(p.device, p.dtype)

        def edit(hidden: Tensor) -> Tensor:
            out = hidden.clone()
            out[:, -1, :] = new
            return out

        site = parse_site(f"blocks.{layer}.hook_resid_post", model_dims(root)[0])
        with hooks_removed([attach_edit(root, arch, site, edit)]):
            logits = root(input_ids=batch).logits[:, -1].float()
    probs = logits.softmax(-1).cpu().reshape(len(s.scales), 1 + s.n_random, -1)
    tokens, random_tokens, beats = [], [], []
    for j in range(len(s.scales)):
        own, rand = probs[j, 0], probs[j, 1:].max(0).values
        top = _top(own, tokenizer, s.top_k) if unit is not None else []
        tokens.append(top)
        random_tokens.append(_top(rand, tokenizer, s.top_k))
        ids_top: list[int] = torch.topk(own, min(s.top_k, own.numel())).indices.tolist()
        ids_top = ids_top if unit is not None else []
        beats.append([str(tokenizer.decode([i])) for i in ids_top if own[i] > rand[i]])
    return PatchscopeReading(layer, float(norm), list(s.scales), tokens, random_tokens, beats, s)


def words(reading: PatchscopeReading) -> list[str]:
    """Whole words (decoded with a leading space) that beat the null at ``min_scales`` or more
    scales, most scales first."""
    counts: Counter[str] = Counter()
    first: dict[str, str] = {}
    for tokens in reading.beats_null:
        seen = {w.lower(): w for w in readable_words([t for t in tokens if t[:1].isspace()])}
        for low, word in seen.items():
            counts[low] += 1
            first.setdefault(low, word)
    return [first[w] for w, c in counts.most_common() if c >= reading.settings.min_scales]
