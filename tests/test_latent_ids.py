"""A crosscoder latent id in findings.json is the same latent in the MCP tools: the audit and
the agent tools read one crosscoder from the shared artifact cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from auditlens.agent import schemas as s
from auditlens.agent.tools import Toolkit
from auditlens.audit import Budget, audit
from auditlens.audit.steps import diffing, layers
from auditlens.diffing import crosscoder
from auditlens.models import ModelPair

BUDGET = Budget(
    "tiny", n_prompts=12, max_length=24, batch_size=4, crosscoder_steps=40, crosscoder_latents=64
)


def test_report_latent_ids_resolve_to_the_same_decoders(
    tiny_pair: ModelPair, prompts: list[str], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    out = tmp_path / "out"
    audit(
        tiny_pair, out, budget=BUDGET, prompts=prompts, steps=[layers.STEP, diffing.STEP],
        progress=False, cache=cache,
    )  # fmt: skip
    found = json.loads((out / "findings.json").read_text())
    cc = next(f for f in found["findings"] if f["id"] == "diffing.crosscoder.ft_only")
    ids = [int(ref.removeprefix("latent:")) for ref in cc["refs"]]
    assert ids, "the crosscoder finding names its latents"
    result_json = next(a for a in cc["artifacts"] if a.endswith("result.json"))
    saved = crosscoder.load(out / Path(result_json).parent)
    report_latents = {info.latent: info for info in saved.latents.latents}  # type: ignore[union-attr]
    decoders = saved.crosscoder.decoder_directions(cc["site"])

    toolkit = Toolkit.create(
        tiny_pair, tmp_path / "ws", budget=BUDGET, prompts=prompts, cache=cache
    )
    page = toolkit.top_diff_latents(s.TopDiffLatentsInput(limit=5))
    assert page.site == cc["site"]  # the tools default to the audit's crosscoder site
    assert not page.trained_now  # read from the cache the audit filled
    for latent in ids:
        details = toolkit.latent_details(
            s.LatentDetailsInput(latent=latent, site=cc["site"], n_tokens=8)
        )
        assert details.crosscoder == page.crosscoder
        for side in ("base", "finetuned"):
            expected = float(decoders[side][latent].float().norm())
            assert details.logit_effects[side].decoder_norm == pytest.approx(expected, rel=1e-6)
        promoted = [t.token for t in details.logit_effects["finetuned"].promoted]
        listed = [t for t, _ in report_latents[latent].logit_effects["finetuned"]["promoted"]]
        assert promoted == listed  # one logit-lens computation for the report and the tool
        assert details.relative_norm == pytest.approx(
            float(saved.result.analysis.relative_norm[latent])
        )
    vector, site, _ = toolkit._vector(f"latent:{ids[0]}", cc["site"])
    torch.testing.assert_close(vector, decoders["finetuned"][ids[0]].float())
    assert site == cc["site"]
    steered = toolkit.steer_generate(
        s.SteerGenerateInput(prompts=["hi"], vector=f"latent:{ids[0]}", max_new_tokens=3)
    )
    assert steered.site == cc["site"] and len(steered.rows) == 1


def test_workspace_links_the_cached_crosscoder(
    tiny_pair: ModelPair, prompts: list[str], tmp_path: Path
) -> None:
    toolkit = Toolkit.create(
        tiny_pair, tmp_path / "ws", budget=BUDGET, prompts=prompts, cache=tmp_path / "cache"
    )
    page = toolkit.top_diff_latents(s.TopDiffLatentsInput(limit=3))
    assert page.trained_now
    folder: Any = tmp_path / "ws" / page.crosscoder_dir
    assert (folder / "result.json").is_file() and (folder / "latents" / "latents.json").is_file()
