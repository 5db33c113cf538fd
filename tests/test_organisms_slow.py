"""The shipped organism adapters load onto the embedded base and change its outputs."""

from __future__ import annotations

import pytest
import torch

from auditlens.testbed import load_manifest, shipped_organisms

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", shipped_organisms())
def test_shipped_organism_loads_as_pair(name: str) -> None:
    from auditlens.models import load_pair

    pair = load_pair(adapter=f"organism:{name}", device="cpu")
    manifest = load_manifest(name)
    assert pair.finetuned.adapter_sha256 is not None
    assert pair.base.sha256 == manifest.base_sha256
    enc = pair.tokenizer("def read_file(path):\n    with open(", return_tensors="pt")
    with torch.no_grad():
        with pair.base.active() as model:
            base_logits = model(**enc).logits
        with pair.finetuned.active() as model:
            ft_logits = model(**enc).logits
    assert torch.isfinite(ft_logits).all()
    assert (ft_logits - base_logits).abs().max() > 1e-2  # the adapter is on and non-trivial
    assert not pair.identical
