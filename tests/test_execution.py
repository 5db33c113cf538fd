"""Device-aware execution: batch sizing from memory or a token budget, fp32 statistics."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from auditlens.errors import AuditlensError
from auditlens.execution import (
    CPU_TOKEN_BUDGET,
    RunningMoments,
    auto_batch_size,
    for_stats,
    free_memory_bytes,
    kv_bytes_per_token,
    row_bytes,
    stats_dtype,
    weights_dtype,
)
from tests.conftest import make_tiny_model

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def model(tiny_tokenizer: Any) -> torch.nn.Module:
    return make_tiny_model("llama", len(tiny_tokenizer))


def test_kv_and_row_bytes_follow_the_config(model: torch.nn.Module) -> None:
    cfg = model.config  # type: ignore[attr-defined]
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    expected = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * 4
    assert kv_bytes_per_token(model) == expected
    assert kv_bytes_per_token(model, torch.bfloat16) == expected // 2
    assert row_bytes(model, 10, 5) > 15 * expected
    assert row_bytes(model, 20, 5) > row_bytes(model, 10, 5)


def test_cpu_batches_follow_the_token_budget(model: torch.nn.Module) -> None:
    assert auto_batch_size(model, 100, 100, token_budget=1000, free_bytes=10**12) == 5
    assert auto_batch_size(model, 100, 100, free_bytes=10**12) == CPU_TOKEN_BUDGET // 200
    assert auto_batch_size(model, 100, 100, token_budget=10**9, n_rows=7, free_bytes=10**12) == 7
    tight = auto_batch_size(
        model, 100, 100, token_budget=10**9, free_bytes=3 * row_bytes(model, 100, 100)
    )
    assert tight == 2  # 80% of three rows' memory
    assert auto_batch_size(model, 100, 100, token_budget=1, free_bytes=0) == 1  # never zero
    assert auto_batch_size(model, 4000, 96) >= 1  # real free memory
    with pytest.raises(AuditlensError):
        auto_batch_size(model, 0, 10)
    with pytest.raises(AuditlensError):
        auto_batch_size(model, 10, 10, memory_fraction=0)


def test_dtypes_for_weights_and_statistics() -> None:
    assert weights_dtype("cpu") == torch.float32
    assert stats_dtype(torch.bfloat16) == torch.float32 == stats_dtype(torch.float16)
    assert stats_dtype(torch.float64) == torch.float64
    x = torch.ones(3, dtype=torch.bfloat16)
    assert for_stats(x).dtype == torch.float32 and for_stats(x.float()).dtype == torch.float32
    assert free_memory_bytes("cpu") > 0


def test_running_moments_match_the_whole_data_and_survive_bfloat16() -> None:
    gen = torch.Generator().manual_seed(0)
    data = torch.randn(1000, 4, generator=gen, dtype=torch.float64) * 3 + 1
    moments = RunningMoments()
    for chunk in data.split(137):
        moments.update(chunk)
    assert moments.count == 1000
    torch.testing.assert_close(moments.mean, data.mean(0))
    torch.testing.assert_close(moments.variance(), data.var(0))
    halves = RunningMoments()
    halves.update(data[:400])
    other = RunningMoments()
    other.update(data[400:])
    merged = halves.merge(other)
    torch.testing.assert_close(merged.std(), data.std(0))
    # 2¹⁶ bfloat16 ones: a bfloat16 running sum stalls at 256, the moments do not.
    ones = torch.ones(2**16, 1, dtype=torch.bfloat16)
    naive = torch.zeros(1, dtype=torch.bfloat16)
    for chunk in ones.split(1024):
        for value in chunk:
            naive += value
        break  # one chunk is enough to see it stall below the true count
    assert float(naive) < 1024
    acc = RunningMoments()
    for chunk in ones.split(1024):
        acc.update(chunk)
    assert acc.mean is not None and float(acc.mean[0]) == 1.0 and acc.count == 2**16
    with pytest.raises(AuditlensError):
        RunningMoments().variance()


@CUDA
def test_cuda_batch_size_comes_from_free_memory(model: torch.nn.Module) -> None:
    model = model.to("cuda")
    free = free_memory_bytes("cuda")
    assert free > 0
    rows = auto_batch_size(model, 128, 96, max_rows=10**6, free_bytes=free)
    assert rows == max(1, min(10**6, int(free * 0.8) // row_bytes(model, 128, 96)))
    assert auto_batch_size(model, 128, 96) >= 1  # queried now, capped at MAX_AUTO_ROWS
    assert weights_dtype("cuda") in (torch.bfloat16, torch.float32)
