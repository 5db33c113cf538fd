"""Parts of the Activation Difference Lens: the steering check against random vectors of
equal norm, and the per-position logit-lens reading."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from auditlens.datasets import Prompt, PromptSet, iter_token_batches, load_prompts
from auditlens.errors import AuditlensError
from auditlens.hooks import add_vector
from auditlens.lens import logit_lens, token_kl, top_tokens
from auditlens.models import ModelPair
from auditlens.progress import progress_bar
from auditlens.stats import random_directions

__all__ = ["SteeringCheck", "as_text", "read_positions", "steering_check", "tuples"]


@dataclass
class SteeringCheck:
    """Mean ``KL(p_ft || p_base_steered)`` with the ADL vector vs random vectors of equal norm."""

    site: str
    scale: float
    vector_norm: float
    n_tokens: int
    kl_unsteered: float
    kl_adl: float
    kl_random: list[float]

    @property
    def reduction_adl(self) -> float:
        return self.kl_unsteered - self.kl_adl

    @property
    def reduction_random(self) -> list[float]:
        return [self.kl_unsteered - k for k in self.kl_random]

    @property
    def z_score(self) -> float:
        r = torch.tensor(self.reduction_random, dtype=torch.float64)
        std = float(r.std()) if r.numel() > 1 else 0.0
        return (self.reduction_adl - float(r.mean())) / max(std, 1e-12)

    @property
    def p_value(self) -> float:
        """Empirical one-sided p: ``(1 + #{random >= ADL}) / (N + 1)``."""
        n_ge = sum(1 for r in self.reduction_random if r >= self.reduction_adl)
        return (1 + n_ge) / (len(self.kl_random) + 1)

    def to_json(self) -> dict[str, Any]:
        rand = self.reduction_random
        mean = sum(rand) / len(rand) if rand else 0.0
        return {
            **asdict(self),
            "reduction_adl": self.reduction_adl,
            "reduction_random_mean": mean,
            "reduction_random_max": max(rand) if rand else 0.0,
            "z_score": self.z_score,
            "p_value": self.p_value,
        }


def tuples(tree: dict[str, Any]) -> Any:
    """JSON lists of ``[token, logit]`` back to tuples, three levels down."""
    return {
        a: {b: {c: [tuple(x) for x in toks] for c, toks in d.items()} for b, d in sub.items()}
        for a, sub in tree.items()
    }


def as_text(prompts: PromptSet) -> PromptSet:
    items = []
    for p in prompts.prompts:
        if p.messages is None:
            items.append(p)
        else:
            items.append(Prompt(text="\n\n".join(c for _, c in p.messages if c.strip())))
    return PromptSet(f"{prompts.name}:text", tuple(items))


def read_positions(
    pair: ModelPair,
    layers: list[int],
    by_pos: Float[Tensor, "n_layers n_positions d_model"],
    counts: Tensor,
    n: int,
) -> dict[str, dict[str, dict[str, list[tuple[str, float]]]]]:
    """Tokens each position's δ promotes, through both lenses (positions with tokens only)."""
    out: dict[str, dict[str, dict[str, list[tuple[str, float]]]]] = {}
    positions = [p for p in range(by_pos.shape[1]) if int(counts[p]) > 0]
    for i, layer in enumerate(layers):
        vectors = by_pos[i, positions]
        readings = {side.name: logit_lens(side, vectors) for side in pair.sides}
        out[str(layer)] = {
            str(p): {
                name: top_tokens(logits[j], pair.tokenizer, n)[0]
                for name, logits in readings.items()
            }
            for j, p in enumerate(positions)
        }
    return out


@torch.no_grad()
def steering_check(
    pair: ModelPair,
    prompts: PromptSet | Sequence[Any] | str,
    site: str,
    vector: Float[Tensor, " d_model"],
    *,
    n_random: int = 16,
    seed: int = 0,
    batch_size: int = 16,
    max_length: int = 64,
    progress: bool = True,
) -> SteeringCheck:
    """How much adding ``vector`` to the base model lowers mean ``KL(p_ft || p_base)``,
    beside ``n_random`` random vectors of the same norm."""
    prompt_set = load_prompts(prompts)
    controls = random_directions(n_random, vector.numel(), float(vector.double().norm()), seed=seed)
    vectors = [vector.float(), *controls]
    kl_sums = torch.zeros(len(vectors) + 1, dtype=torch.float64)
    n_tok = 0
    device = pair.device
    with progress_bar(len(prompt_set), "ADL steering check", enabled=progress) as advance:
        for batch in iter_token_batches(
            prompt_set, pair.tokenizer, batch_size=batch_size, max_length=max_length
        ):
            ids, attn = batch.input_ids.to(device), batch.attention_mask.to(device)
            mask = (batch.token_mask & batch.attention_mask.bool()).to(device)
            with pair.finetuned.active():
                ft = pair.finetuned.hf(input_ids=ids, attention_mask=attn).logits
            with pair.base.active():
                base = pair.base.hf(input_ids=ids, attention_mask=attn).logits
                kl_sums[0] += float(token_kl(ft, base)[mask].double().sum())
                for j, v in enumerate(vectors):
                    with add_vector(pair.base.hf, pair.arch, site, v):
                        steered = pair.base.hf(input_ids=ids, attention_mask=attn).logits
                    kl_sums[j + 1] += float(token_kl(ft, steered)[mask].double().sum())
            n_tok += int(mask.sum())
            advance(ids.shape[0])
    if n_tok == 0:
        raise AuditlensError("the steering check found no tokens in its prompts")
    kls = (kl_sums / n_tok).tolist()
    return SteeringCheck(
        site=site,
        scale=1.0,
        vector_norm=float(vector.norm()),
        n_tokens=n_tok,
        kl_unsteered=kls[0],
        kl_adl=kls[1],
        kl_random=kls[2:],
    )
