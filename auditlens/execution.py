"""Device-aware execution: batch sizes from free memory or a token budget, and fp32 statistics.

Generation and scans size their batches here instead of using a fixed 8:

- on CUDA, :func:`auto_batch_size` divides the free device memory (``torch.cuda.mem_get_info``,
  times a safety fraction) by what one row needs: its KV cache for ``prompt + new`` tokens plus
  the prefill activations of one row (computed from the model config);
- on the CPU, where a step's cost is dominated by reading the weights at small batches and by
  arithmetic at large ones, the rows are set by a token budget (:data:`CPU_TOKEN_BUDGET`
  tokens of ``prompt + new`` per batch, measured on the embedded model: see
  docs/benchmarks.md), capped by free RAM.

Weights may be bfloat16 on an accelerator (:func:`weights_dtype`), but anything accumulated
over many tokens (means, variances, KL sums, logits turned into probabilities) is computed in
float32 or wider: :func:`stats_dtype`, :func:`for_stats` and :class:`RunningMoments` do that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from auditlens.errors import AuditlensError

__all__ = [
    "CPU_TOKEN_BUDGET",
    "MAX_AUTO_ROWS",
    "RunningMoments",
    "auto_batch_size",
    "device_of",
    "for_stats",
    "free_memory_bytes",
    "kv_bytes_per_token",
    "row_bytes",
    "stats_dtype",
    "weights_dtype",
]

CPU_TOKEN_BUDGET = 16384
"""Tokens (prompt + new, padded) per generation batch on the CPU.

Measured on the embedded 135M model + adapter, one thread, the fast audit's 80 behaviour
rows (both sides, 96 new tokens, prefix shared): 79 / 60 / 54 / 49 s of CPU time at budgets
of 4096 / 8192 / 16384 / 32768 tokens (24 / 48 / all 80 / all 80 rows per batch; the last
two differ by noise). Past one batch for all rows a larger budget changes nothing here; on a
bigger workload it would only delay the first results while the KV cache grows.
"""
MAX_AUTO_ROWS = 512
"""Upper bound on an automatically sized batch (launch and Python overheads are amortised
long before this; larger batches only delay the first results)."""
_HALF = (torch.float16, torch.bfloat16)


def device_of(model: Any) -> torch.device:
    """The device of a model's first parameter (CPU for a parameterless module)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _dtype_of(model: Any) -> torch.dtype:
    for p in model.parameters():
        return p.dtype
    return torch.float32


def free_memory_bytes(device: torch.device | str) -> int:
    """Free memory on ``device``: available RAM on the CPU; on CUDA ``cudaMemGetInfo``'s free
    bytes plus what PyTorch's caching allocator holds but does not use (it is reusable)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        cached = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
        return int(free + max(0, cached))
    import psutil

    return int(psutil.virtual_memory().available)


def _text_config(model: Any) -> Any:
    config = getattr(model, "config", None)
    if config is None:
        raise AuditlensError("auto batch sizing needs a model with a Hugging Face config")
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def kv_bytes_per_token(model: Any, dtype: torch.dtype | None = None) -> int:
    """Bytes of KV cache one token needs: ``2 · layers · kv_heads · head_dim · itemsize``."""
    cfg = _text_config(model)
    layers = int(cfg.num_hidden_layers)
    heads = int(cfg.num_attention_heads)
    kv_heads = int(getattr(cfg, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
    itemsize = (dtype or _dtype_of(model)).itemsize
    return 2 * layers * kv_heads * head_dim * itemsize


def row_bytes(model: Any, prompt_tokens: int, new_tokens: int) -> int:
    """Peak bytes one generation row needs beyond the weights (KV cache + prefill activations).

    Prefill holds, per prompt token, a few hidden-size tensors and the MLP's intermediate
    activations (gate, up and their product) at once; the logits are kept for the last
    position only (fp32). Attention is assumed to be fused (no ``seq²`` score matrix).
    """
    cfg = _text_config(model)
    itemsize = _dtype_of(model).itemsize
    hidden = int(cfg.hidden_size)
    inter = int(getattr(cfg, "intermediate_size", None) or 4 * hidden)
    vocab = int(cfg.vocab_size)
    kv = kv_bytes_per_token(model) * (prompt_tokens + new_tokens)
    prefill = prompt_tokens * (6 * hidden + 3 * inter) * itemsize
    logits = 2 * vocab * 4
    return kv + prefill + logits


def auto_batch_size(
    model: Any,
    prompt_tokens: int,
    new_tokens: int,
    *,
    n_rows: int | None = None,
    token_budget: int | None = None,
    memory_fraction: float = 0.8,
    free_bytes: int | None = None,
    max_rows: int = MAX_AUTO_ROWS,
) -> int:
    """Rows per generation batch for prompts of up to ``prompt_tokens`` plus ``new_tokens``.

    CUDA: ``memory_fraction`` of the free device memory over :func:`row_bytes`. CPU: the token
    budget (:data:`CPU_TOKEN_BUDGET` unless given) over ``prompt + new`` tokens, and no more
    rows than ``memory_fraction`` of the free RAM holds. Always at least 1, at most
    ``max_rows`` and ``n_rows`` (the number of rows there are).
    """
    if prompt_tokens < 1 or new_tokens < 0:
        raise AuditlensError("auto_batch_size needs prompt_tokens >= 1 and new_tokens >= 0")
    if not 0 < memory_fraction <= 1:
        raise AuditlensError("memory_fraction must be in (0, 1]")
    device = device_of(model)
    per_row = max(1, row_bytes(model, prompt_tokens, new_tokens))
    free = free_memory_bytes(device) if free_bytes is None else free_bytes
    by_memory = int(free * memory_fraction) // per_row
    if device.type == "cpu" or token_budget is not None:
        budget = CPU_TOKEN_BUDGET if token_budget is None else token_budget
        rows = min(by_memory, budget // (prompt_tokens + new_tokens))
    else:
        rows = by_memory
    cap = max_rows if n_rows is None else min(max_rows, n_rows)
    return max(1, min(rows, cap))


def weights_dtype(device: torch.device | str) -> torch.dtype:
    """The dtype to load weights in: bfloat16 on a CUDA device that supports it, else float32."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def stats_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype to accumulate statistics of ``dtype`` values in: float32 for half types."""
    return torch.float32 if dtype in _HALF else dtype


def for_stats(tensor: Tensor) -> Tensor:
    """``tensor`` in :func:`stats_dtype` (a no-op for float32/float64)."""
    return tensor.to(stats_dtype(tensor.dtype))


@dataclass
class RunningMoments:
    """Count, mean and variance over batches, accumulated in float64 whatever comes in.

    Batches are merged with Chan et al.'s pairwise update, so the result does not depend on
    how the rows are split into batches (up to float64 rounding), and bfloat16 inputs lose
    nothing beyond their own rounding: summing 10⁶ bfloat16 values in bfloat16 would stall at
    256 ulps, here it does not.
    """

    count: int = 0
    mean: Tensor | None = None
    m2: Tensor | None = None

    def update(self, batch: Tensor) -> None:
        """Add rows of ``batch`` (``[n, ...]``: statistics over the first dimension)."""
        if batch.shape[0] == 0:
            return
        x = batch.detach().to(torch.float64)
        n = x.shape[0]
        mean = x.mean(0)
        m2 = ((x - mean) ** 2).sum(0)
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean.to(mean.device)
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    def variance(self, ddof: int = 1) -> Tensor:
        """Per-coordinate variance (``ddof=1``: the unbiased estimate)."""
        if self.m2 is None or self.count - ddof <= 0:
            raise AuditlensError("not enough rows for a variance")
        return self.m2 / (self.count - ddof)

    def std(self, ddof: int = 1) -> Tensor:
        return self.variance(ddof).sqrt()

    def merge(self, other: RunningMoments) -> RunningMoments:
        """The moments of both sets of rows (e.g. from two shards or processes)."""
        if other.mean is None or other.m2 is None:
            return RunningMoments(self.count, self.mean, self.m2)
        if self.mean is None or self.m2 is None:
            return RunningMoments(other.count, other.mean, other.m2)
        total = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / total)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / total)
        return RunningMoments(total, mean, m2)
