"""The step cache: keyed by prompt contents, models, settings and version; artifacts under the
key, so no finding cites another model's artifact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from auditlens.audit import Budget, audit
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
    monkeypatch.setattr(cache, "code_version", lambda: "0.1.0+edited")
    assert step_key("layers", layers.settings(TINY, None), tiny_pair, "p", {}) != base  # type: ignore[arg-type]
    assert ArtifactCache().key("k", {"a": 1}) != ArtifactCache().key("k", {"a": 2})
    assert as_json(TINY)["n_prompts"] == 4


def test_code_version_moves_with_any_code_edit(tmp_path: Path) -> None:
    from auditlens._version import __version__, code_version, tree_hash

    pkg, other = tmp_path / "pkg", tmp_path / "other"
    (pkg / "sub").mkdir(parents=True)
    other.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "d.json").write_text("{}")
    (other / "b.py").write_text("y = 1\n")
    before = tree_hash([pkg, other])
    (pkg / "w.safetensors").write_bytes(b"weights")  # keyed by their own fingerprints
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "a.py").write_text("cached")
    assert tree_hash([pkg, other]) == before
    (pkg / "a.py").write_text("x = 2\n")  # same version number, other code
    edited = tree_hash([pkg, other])
    assert edited != before
    (pkg / "sub" / "d.json").rename(pkg / "d.json")  # a move counts
    moved = tree_hash([pkg, other])
    assert moved != edited
    (other / "b.py").write_text("y = 2\n")  # a second root counts too
    assert tree_hash([pkg, other]) != moved
    assert code_version().startswith(__version__ + "+") and code_version() == code_version()


def test_code_version_covers_every_package_folder() -> None:
    import importlib
    import tomllib

    from auditlens._version import code_roots

    root = Path(__file__).resolve().parents[1]
    mapped = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = code_roots()
    for name in mapped["package-dir"]:
        module = importlib.import_module(name)
        folder = Path(module.__file__ or "").resolve().parent
        assert any(folder == r or r in folder.parents for r in roots), name
