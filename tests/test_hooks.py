"""The one hooks module: reading sites (and stopping early), adding vectors, removal."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import torch

from auditlens.errors import AuditlensError
from auditlens.hooks import add_vector, capture_until, read_sites
from auditlens.sites import arch_spec, parse_site


def test_read_sites_matches_hidden_states_and_stops(tiny_model_factory: Any) -> None:
    model = tiny_model_factory("llama")
    arch = arch_spec(model)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        full = model(input_ids=ids, output_hidden_states=True).hidden_states
    calls: list[int] = []
    last = model.model.layers[2]
    handle = last.register_forward_pre_hook(lambda *_: calls.append(1))
    sites = [parse_site(f"blocks.{i}.hook_resid_post", 3) for i in (0, 1)]
    try:
        with torch.no_grad():
            acts = read_sites(model, arch, sites, partial(model, input_ids=ids))
    finally:
        handle.remove()
    assert not calls  # stopped after layer 1: layer 2 never ran
    torch.testing.assert_close(acts["blocks.0.hook_resid_post"], full[1])
    torch.testing.assert_close(acts["blocks.1.hook_resid_post"], full[2])
    pre = parse_site("blocks.1.hook_resid_pre", 3)
    got = capture_until(model, arch, pre, partial(model, input_ids=ids))
    torch.testing.assert_close(got.detach(), full[1])
    assert not model.model.layers[1]._forward_pre_hooks  # removed


def test_add_vector_shifts_the_site_and_cleans_up(tiny_model_factory: Any) -> None:
    model = tiny_model_factory("llama")
    arch = arch_spec(model)
    ids = torch.tensor([[5, 6, 7]])
    site = parse_site("blocks.0.hook_resid_post", 3)
    vector = torch.randn(32)
    read = partial(read_sites, model, arch, [site], partial(model, input_ids=ids))
    with torch.no_grad():
        clean = read()[site.name]
        with add_vector(model, arch, site, vector):
            shifted = read()[site.name]
        again = read()[site.name]
    torch.testing.assert_close(shifted, clean + vector)
    torch.testing.assert_close(again, clean)
    with (
        pytest.raises(AuditlensError, match="expected \\[32\\]"),
        add_vector(model, arch, site, torch.ones(3)),
    ):
        pass
