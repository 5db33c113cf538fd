"""The step cache: keyed by prompt contents, models, settings and version; artifacts under the
key, so no finding cites another model's artifact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from auditlens.audit import AuditContext, Budget, audit
from auditlens.audit.cache import ArtifactCache, as_json, step_key
from auditlens.audit.steps import layers
from auditlens.models import ModelPair
from tests.conftest import perturbed_copy

TINY = Budget("tiny", n_prompts=4, max_length=16, batch_size=4)


def _layers(pair: ModelPair, out: Path, prompts: Any) -> Any:
    return audit(pair, out, budget=TINY, prompts=prompts, steps=[layers.STEP], progress=False)


def test_editing_the_prompt_file_recomputes(tiny_pair: ModelPair, tmp_path: Path) -> None:
    path = tmp_path / "my.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"hello world {i}"}) for i in range(4)))
    first = _layers(tiny_pair, tmp_path / "out", str(path))
    again = _layers(tiny_pair, tmp_path / "out", str(path))
    assert any("reused" in n for n in again.findings.notices)
    path.write_text("\n".join(json.dumps({"text": f"goodbye moon {i}"}) for i in range(4)))
    edited = _layers(tiny_pair, tmp_path / "out", str(path))
    assert not any("reused" in n for n in edited.findings.notices)
    kl = {r.findings.findings[1].value for r in (first, edited)}
    assert len(kl) == 2
    keys = [r.findings.config["step_keys"]["layers"] for r in (first, edited)]
    assert keys[0] != keys[1]


def test_switching_models_never_cites_a_foreign_artifact(
    tiny_pair: ModelPair, tiny_tokenizer: Any, prompts: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = _layers(tiny_pair, out, prompts)
    other = ModelPair.from_models(
        tiny_pair.base.module,
        perturbed_copy(tiny_pair.base.module, scale=0.5, seed=7),
        tiny_tokenizer,
    )
    second = _layers(other, out, prompts)
    assert not any("reused" in n for n in second.findings.notices)
    cited = {a for f in second.findings.findings for a in f.artifacts}
    old = {a for f in first.findings.findings for a in f.artifacts}
    assert cited and not cited & old
    for path in cited:
        assert (out / path).is_file()
        kl = json.loads((out / path).read_text()) if path.endswith("kl.json") else None
        if kl is not None:
            assert kl["mean"] == next(
                f.value for f in second.findings.findings if f.id == "kl.mean"
            )
    assert len(list((out / "steps" / "layers").iterdir())) == 1  # the stale key was removed


def test_key_covers_version_settings_models_and_prompts(
    tiny_pair: ModelPair, tiny_model_factory: Any, tiny_tokenizer: Any, monkeypatch: Any
) -> None:
    from auditlens.audit import cache

    base = step_key("layers", layers.settings(TINY, None), tiny_pair, "p", {})  # type: ignore[arg-type]
    other_settings = layers.settings(Budget("b", n_prompts=4, max_length=32, batch_size=4), None)  # type: ignore[arg-type]
    assert step_key("layers", other_settings, tiny_pair, "p", {}) != base
    assert step_key("layers", layers.settings(TINY, None), tiny_pair, "q", {}) != base  # type: ignore[arg-type]
    null = ModelPair.from_models(tiny_model_factory(), None, tiny_tokenizer)
    assert step_key("layers", layers.settings(TINY, None), null, "p", {}) != base  # type: ignore[arg-type]
    assert step_key("layers", layers.settings(TINY, None), tiny_pair, "p", {"x": "1"}) != base  # type: ignore[arg-type]
    monkeypatch.setattr(cache, "__version__", "9.9.9")
    assert step_key("layers", layers.settings(TINY, None), tiny_pair, "p", {}) != base  # type: ignore[arg-type]
    assert as_json(TINY)["n_prompts"] == 4


def test_artifact_cache_builds_once(tmp_path: Path) -> None:
    store = ArtifactCache(tmp_path)
    calls: list[Path] = []

    def build(folder: Path) -> None:
        calls.append(folder)
        (folder / "x.txt").write_text("1")

    def load(folder: Path) -> str:
        return (folder / "x.txt").read_text()

    first = store.get("thing", {"a": 1}, build, load)
    again = store.get("thing", {"a": 1}, build, load)
    other = store.get("thing", {"a": 2}, build, load)
    assert first[0] == again[0] == "1" and first[2] and not again[2] and other[2]
    assert first[1] == again[1] != other[1] and len(calls) == 2
    assert not [p for p in (tmp_path / "thing").iterdir() if p.name.startswith(".tmp")]


def test_context_prompt_set_is_the_budget_head(tiny_pair: ModelPair, tmp_path: Path) -> None:
    ctx = AuditContext(tiny_pair, tmp_path, TINY, [f"p{i}" for i in range(9)], progress=False)
    assert len(ctx.prompt_set()) == TINY.n_prompts
