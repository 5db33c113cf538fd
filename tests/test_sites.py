"""Site parsing and resolution on several architectures."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from auditlens.errors import SiteError
from auditlens.sites import (
    HOOKS,
    Site,
    arch_spec,
    model_dims,
    parse_site,
    parse_sites,
    resolve_module,
)

ARCHS = ["llama", "qwen2", "gemma", "gpt2", "gpt_neox"]


def test_parse_site_roundtrip_and_negative_layers() -> None:
    assert parse_site("blocks.2.hook_mlp_out", 4).name == "blocks.2.hook_mlp_out"
    assert parse_site("blocks.-1.hook_resid_post", 4) == parse_site("blocks.3.hook_resid_post", 4)
    assert parse_site("blocks.-4.hook_resid_pre", 4).layer == 0


@pytest.mark.parametrize(
    "bad", ["blocks.4.hook_resid_post", "blocks.-5.hook_resid_pre", "blocks.1.hook_z", "layer1", ""]
)
def test_unknown_sites_list_the_valid_ones(bad: str) -> None:
    with pytest.raises(SiteError, match=r"valid sites are blocks\.\{0\.\.3\}"):
        parse_site(bad, 4)


def test_parse_sites_sorts_in_forward_order_and_dedupes() -> None:
    sites = parse_sites(
        "blocks.1.hook_resid_post,blocks.0.hook_mlp_out,blocks.1.hook_resid_pre,"
        "blocks.-2.hook_resid_post",
        3,
    )
    assert [s.name for s in sites] == [
        "blocks.0.hook_mlp_out",
        "blocks.1.hook_resid_pre",
        "blocks.1.hook_resid_post",
    ]
    assert Site(0, 0) < Site(0, 3) < Site(1, 0)


@pytest.mark.parametrize("arch", ARCHS)
def test_sites_resolve_to_the_right_tensors(arch: str, tiny_model_factory: Any) -> None:
    """Each canonical hook reads the tensor the architecture computes there."""
    model = tiny_model_factory(arch)
    spec = arch_spec(model)
    n_layers, d_model = model_dims(model)
    assert (n_layers, d_model) == (3, 32)
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for hook_index, hook in enumerate(HOOKS):
        module, which = resolve_module(model, spec, Site(1, hook_index))

        def grab(mod: Any, args: Any, kwargs: Any, out: Any = None, hook: str = hook) -> None:
            value = args[0] if args else kwargs["hidden_states"]
            if out is not None:
                value = out[0] if isinstance(out, tuple) else out
            seen[hook] = value.detach()

        if which == "input":
            handles.append(module.register_forward_pre_hook(grab, with_kwargs=True))
        else:
            handles.append(module.register_forward_hook(grab, with_kwargs=True))
    with torch.no_grad():
        model(input_ids=torch.arange(10).unsqueeze(0))
    for h in handles:
        h.remove()
    assert set(seen) == set(HOOKS)
    for value in seen.values():
        assert value.shape == (1, 10, 32)
    # Sequential (and GPT-NeoX parallel) residual blocks: post = pre + attn + mlp.
    torch.testing.assert_close(
        seen["hook_resid_post"],
        seen["hook_resid_pre"] + seen["hook_attn_out"] + seen["hook_mlp_out"],
        atol=1e-5,
        rtol=1e-5,
    )


def test_unsupported_architecture_is_a_clear_error() -> None:
    with pytest.raises(SiteError, match="unsupported architecture Linear"):
        arch_spec(torch.nn.Linear(2, 2))
