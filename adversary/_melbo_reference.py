"""The plain MELBO reference: one forward per vector per step, one optimiser per vector.

Same dynamics as :func:`auditlens.adversary.melbo.train_melbo` (the batched implementation);
kept for the equivalence test and the speed benchmark, not for users.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from auditlens.adversary.melbo import (
    MelboConfig,
    MelboResult,
    SideName,
    _finish,
    _initial_vectors,
    _prepare,
    _Setup,
    melbo_objective,
)
from auditlens.datasets import PromptSet
from auditlens.hooks import capture_until
from auditlens.models import ModelPair, ModelSide
from auditlens.progress import progress_bar
from auditlens.steering import Steer, steer

__all__ = ["train_melbo_reference"]


def train_melbo_reference(
    pair: ModelPair,
    prompts: PromptSet | Sequence[Any] | str,
    config: MelboConfig | None = None,
    *,
    side: SideName = "finetuned",
) -> MelboResult:
    """Plain reference: one forward per vector per step, one optimiser per vector.

    Same dynamics as :func:`train_melbo` (for the equivalence test and the benchmark).
    """
    config = config or MelboConfig()
    started = time.perf_counter()
    setup = _prepare(pair, prompts, config, side)
    q = config.q_value
    init = _initial_vectors(config.n_vectors, setup.d_model, setup.radius, config.seed, setup.dtype)
    thetas = [torch.nn.Parameter(v.clone().to(pair.device)) for v in init]
    optimizers = [
        torch.optim.AdamW([t], lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
        for t in thetas
    ]
    curves: list[Tensor] = []
    with progress_bar(config.steps, "MELBO (one vector at a time)") as advance:
        for _ in range(config.steps):
            combined: list[float] = []
            per_side: list[list[float]] = [[] for _ in setup.sides]
            for theta, optimizer in zip(thetas, optimizers, strict=True):
                optimizer.zero_grad(set_to_none=True)
                total = torch.zeros((), dtype=setup.dtype, device=pair.device)
                for i, (model_side, weight) in enumerate(setup.sides):
                    obj = _single_objective(
                        pair, model_side, setup, theta, setup.clean[i], config.p, q
                    )
                    per_side[i].append(float(obj.detach()))
                    total = total + weight * obj
                combined.append(float(total.detach()))
                (-total).backward(inputs=[theta])
            curves.append(torch.tensor([combined, *per_side], dtype=setup.dtype))
            with torch.no_grad():
                units = [t / t.norm() for t in thetas]
                for theta in thetas:
                    assert theta.grad is not None
                    grad = theta.grad.clone()
                    for u in units:
                        grad -= (theta.grad @ u) * u
                    theta.grad.copy_(grad)
            for optimizer in optimizers:
                optimizer.step()
            with torch.no_grad():
                placed: list[Tensor] = []
                for theta in thetas:
                    v = theta.detach().clone()
                    for u in placed:
                        v = v - (v @ u) * u
                    u_new = v / v.norm()
                    placed.append(u_new)
                    theta.copy_(u_new * setup.radius)
            advance(1)
    vectors = torch.stack([t.detach() for t in thetas])
    return _finish(pair, setup, config, side, vectors, curves, started, "reference")


def _single_objective(
    pair: ModelPair,
    model_side: ModelSide,
    setup: _Setup,
    theta: Tensor,
    clean: Tensor,
    p: float,
    q: float,
) -> Tensor:
    hf = model_side.hf

    def run() -> Any:
        return hf(input_ids=setup.input_ids, attention_mask=setup.attention_mask)

    with model_side.active(), steer(model_side, pair.arch, Steer(setup.source, theta)):
        h = capture_until(hf, pair.arch, setup.target, run)
    return melbo_objective(h.to(setup.dtype)[None], clean, setup.target_mask, p, q)[0]
