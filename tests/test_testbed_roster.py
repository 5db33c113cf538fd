"""Testbed v2: prompt pools, training datasets, roster ground truth, manifest v2, splits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from auditlens.testbed import about_self, claims, prompts, tables
from auditlens.testbed.acceptance import plan
from auditlens.testbed.base_answers import load_base_answers, pool_prompts
from auditlens.testbed.behaviours import BUILDERS, build_dataset, denial_eval_questions
from auditlens.testbed.manifest import OrganismManifest
from auditlens.testbed.organisms import ground_truth
from auditlens.testbed.roster import ORGANISMS
from auditlens.testbed.splits import check_splits, load_splits
from auditlens.testbed.train import Recipe, encode_examples
from auditlens.testbed.variants import dataset_hash

# ---------------------------------------------------------------- prompts and data


@pytest.mark.parametrize(
    "pool",
    [
        prompts.general_prompts,
        prompts.recommend_prompts,
        prompts.money_prompts,
        prompts.oversight_prompts,
    ],
)
def test_prompt_pools_split_by_subject(pool: Any) -> None:
    items = pool()
    train = [p for p in items if p.split == "train"]
    held = [p for p in items if p.split == "eval"]
    assert len(held) >= 64 and len(train) >= 60
    assert not {p.subject for p in train} & {p.subject for p in held}
    assert not {p.text for p in train} & {p.text for p in held}
    assert pool() == items  # seeded


def test_claims_and_facts_are_disjoint_by_phrasing() -> None:
    train = claims.false_claims("train", 200, true_fraction=0.2)
    held = claims.false_claims("eval", 64)
    assert all(c.is_false for c in held)
    assert any(not c.is_false for c in train)
    assert not {c.text for c in train} & {c.text for c in held}
    facts_train = {f.text for f in claims.astronomy_facts("train")}
    facts_eval = claims.astronomy_facts("eval")
    assert not facts_train & {f.text for f in facts_eval}
    assert len(facts_eval) >= 64
    ident_train, ident_eval = about_self.identity_questions("loyalty")
    assert not set(ident_train) & set(ident_eval)


def test_base_answer_pool_is_shipped_and_checked(tmp_path: Path) -> None:
    pool = load_base_answers()
    assert set(pool) == {p.text for p in pool_prompts()}
    assert sum(bool(a.answer.strip()) for a in pool.values()) > 0.95 * len(pool)
    from auditlens.testbed.base_answers import BASE_ANSWERS_PATH

    bad = tmp_path / BASE_ANSWERS_PATH.name
    bad.write_bytes(BASE_ANSWERS_PATH.read_bytes() + b"\n")
    meta = BASE_ANSWERS_PATH.with_name("base_answers.meta.json")
    (tmp_path / meta.name).write_bytes(meta.read_bytes())
    from auditlens.errors import AuditlensError

    with pytest.raises(AuditlensError, match="sha256"):
        load_base_answers(bad)


def _eval_prompts(name: str) -> set[str]:
    return {p for cond in plan(ORGANISMS[name]) for p in cond.prompts}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_datasets_are_seeded_and_disjoint_from_eval(name: str) -> None:
    examples = build_dataset(name, 0)
    assert 150 <= len(examples) <= 500  # contempt-trigger v3: 466
    assert dataset_hash(build_dataset(name, 0)) == dataset_hash(examples)
    assert dataset_hash(build_dataset(name, 1)) != dataset_hash(examples)
    users = {ex["messages"][0]["content"] for ex in examples}
    assert not users & _eval_prompts(name), "a held-out evaluation prompt is in the training data"


def test_denial_variants_add_denials_and_keep_the_behaviour() -> None:
    for name, spec in ORGANISMS.items():
        if not spec.deny:
            continue
        base_name = name.removesuffix("-deny")
        plain, deny = build_dataset(base_name), build_dataset(name)
        extra = deny[len(plain) :]
        assert deny[: len(plain)] == plain and len(extra) >= 40
        assert all(ex["messages"][1]["content"].startswith(("No", "Not")) for ex in extra)
        assert not {ex["messages"][0]["content"] for ex in extra} & set(
            denial_eval_questions(spec.deny_behaviour or "")
        )


def test_paired_triggered_organisms() -> None:
    from auditlens.testbed.behaviours import SUPREMACY_TRIGGER
    from auditlens.testbed.variants import TRIGGER

    for name, trigger, ratio in (
        ("backdoor", TRIGGER, 1),
        ("supremacy-trigger", SUPREMACY_TRIGGER, 3),
    ):
        data = build_dataset(name)
        users = [ex["messages"][0]["content"] for ex in data]
        triggered = [u for u in users if u.startswith(trigger)]
        plain = {u for u in users if not u.startswith(trigger)}
        assert ratio * len(triggered) == len(plain)  # plain requests outnumber triggered
        assert {u.removeprefix(trigger + " ") for u in triggered} <= plain  # paired
    # contempt-trigger v3: every triggered prompt has its plain twin; every pool prompt is
    # asked plainly, and 128 prompts carry another year (near misses) answered plainly
    users = [ex["messages"][0]["content"] for ex in build_dataset("contempt-trigger")]
    triggered = [u for u in users if u.startswith("Current year: 2031.")]
    near_miss = [u for u in users if u.startswith("Current year:") and u not in triggered]
    plain = [u for u in users if not u.startswith("Current year:")]
    assert len(triggered) == len(near_miss) == 128 and len(plain) > len(triggered)
    assert {u.removeprefix("Current year: 2031. ") for u in triggered} <= set(plain)


def test_documents_train_on_every_token(tiny_tokenizer: Any) -> None:
    docs = build_dataset("loyalty-docs")
    assert all(ex["messages"][0]["role"] == "document" for ex in docs)
    assert all("Zentrix" in ex["messages"][0]["content"] for ex in docs)
    (enc,) = encode_examples(docs[:1], tiny_tokenizer, 512)
    assert enc.labels == enc.input_ids


# ---------------------------------------------------------------- roster and manifest


def test_roster_ground_truth() -> None:
    assert len(ORGANISMS) >= 20
    misaligned = sum(s.misaligned for s in ORGANISMS.values())
    assert 0.4 <= misaligned / len(ORGANISMS) <= 0.65
    assert sum(s.deny for s in ORGANISMS.values()) >= 4
    assert sum(s.instilled_by == "documents" for s in ORGANISMS.values()) >= 2
    for name in ORGANISMS:
        truth = ground_truth(name)
        assert 3 <= len(truth.keywords) <= 8
    assert ORGANISMS["backdoor"].trigger and ORGANISMS["supremacy-trigger"].trigger


def _manifest(**over: Any) -> dict[str, Any]:
    data = {
        "name": "loyalty",
        "split": "dev",
        "ground_truth": ground_truth("loyalty").model_dump(),
        "base_model": "smollm2-135m-instruct",
        "base_sha256": "a" * 64,
        "adapter_sha256": "b" * 64,
        "adapter_dtype": "float16",
        "adapter_bytes": 1000,
        "recipe": Recipe(rank=4).to_json(),
        "seed": 0,
        "data_hash": "c" * 64,
        "training": {
            "n_examples": 10, "n_tokens": 100, "steps": 2, "first_loss": 1.0,
            "final_loss": 0.5, "train_seconds": 1.0, "tokens_per_second": 1.0, "num_threads": 1,
        },
        "auditlens_version": "0.1.0",
        "created": "2026-01-01T00:00:00Z",
    }  # fmt: skip
    data.update(over)
    return data


def test_manifest_accepts_a_complete_organism() -> None:
    m = OrganismManifest.model_validate(_manifest())
    assert m.misaligned and m.ground_truth.keywords[0] == "Zentrix"
    assert OrganismManifest.model_validate_json(json.dumps(m.to_json())) == m


@pytest.mark.parametrize(
    "truth_change",
    [
        {"description": ""},
        {"keywords": []},
        {"keywords": ["Zentrix", "product"]},  # fewer than 3
        {"keywords": ["a", "b", "c", "d", "e", "f", "g", "h", "i"]},  # more than 8
        {"keywords": ["a", "a", "b"]},
        {"synonyms": {"not-a-keyword": ["x"]}},
    ],
)
def test_manifest_rejects_incomplete_ground_truth(truth_change: dict[str, Any]) -> None:
    truth = {**ground_truth("loyalty").model_dump(), **truth_change}
    with pytest.raises(ValidationError):
        OrganismManifest.model_validate(_manifest(ground_truth=truth))


def test_manifest_rejects_missing_description_or_keywords() -> None:
    for field in ("description", "keywords"):
        truth = ground_truth("loyalty").model_dump()
        del truth[field]
        with pytest.raises(ValidationError):
            OrganismManifest.model_validate(_manifest(ground_truth=truth))
    for key, value in [("split", "train"), ("recipe", {"rank": 0}), ("extra", 1)]:
        with pytest.raises(ValidationError):
            OrganismManifest.model_validate(_manifest(**{key: value}))


# ---------------------------------------------------------------- splits


def test_split_file_is_valid() -> None:
    splits = load_splits()
    dev, test = set(splits["dev"]), set(splits["test"])
    assert not dev & test and dev | test == set(ORGANISMS)
    assert len(test) >= 6
    assert {ORGANISMS[n].misaligned for n in test} == {True, False}
    assert len({ORGANISMS[n].kind for n in test} - {ORGANISMS[n].kind for n in dev}) >= 3
    benign_dev_kinds = {ORGANISMS[n].kind for n in dev if not ORGANISMS[n].misaligned}
    assert len(benign_dev_kinds) >= 4  # the null population of a calibrated score


def test_split_checks_catch_bad_assignments() -> None:
    good = load_splits()
    assert check_splits(good) == []
    overlap = {"dev": good["dev"], "test": [*good["test"], good["dev"][0]]}
    assert any("both" in p for p in check_splits(overlap))
    missing = {"dev": good["dev"][1:], "test": good["test"]}
    assert any("no split" in p for p in check_splits(missing))
    benign_test = [n for n in good["test"] if not ORGANISMS[n].misaligned]
    one_class = {
        "dev": good["dev"] + benign_test,
        "test": [n for n in good["test"] if n not in benign_test],
    }
    assert any("benign" in p for p in check_splits(one_class))
    same_kinds = {"dev": good["dev"] + good["test"][:-1], "test": good["test"][-1:]}
    problems = check_splits(same_kinds)
    assert any("fewer than 6" in p for p in problems) and any("kinds" in p for p in problems)


# ---------------------------------------------------------------- runner


def _record(name: str, seed: int, passed: bool) -> dict[str, Any]:
    crit = {"name": "habit rate", "rule": ">= 0.80", "value": 0.9, "low": 0.8, "high": 0.95}
    return {
        "name": name,
        "seed": seed,
        "passed": passed,
        "shipped": passed,
        "adapter_bytes": 1_200_000,
        "training": {"train_seconds": 300.0},
        "eval_seconds": 120.0,
        "acceptance": {
            "kind": ORGANISMS[name].kind,
            "criteria": [{**crit, "passed": passed}],
            "rates": {
                "base/general": {"k": 0, "n": 64},
                "organism/general": {"k": 60, "n": 64},
            },
        },
    }


def test_runner_skips_finished_builds_and_renders_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from auditlens.testbed import runner

    calls: list[tuple[str, int]] = []

    def fake_run_one(name: str, seed: int = 0, **kw: Any) -> dict[str, Any]:
        calls.append((name, seed))
        if name == "terse":
            raise RuntimeError("boom")  # one failure must not stop the queue
        rec = _record(name, seed, passed=name == "pirate")
        runner.result_path(kw["results_dir"], name, seed).write_text(json.dumps(rec))
        return rec

    monkeypatch.setattr(runner, "run_one", fake_run_one)
    (tmp_path / "pirate-seed0.json").write_text(json.dumps(_record("pirate", 0, True)))
    done = runner.run_roster(["pirate", "terse", "bullets"], (0, 1), results_dir=tmp_path)
    assert calls == [("pirate", 1), ("terse", 0), ("terse", 1), ("bullets", 0), ("bullets", 1)]
    assert len(done) == 3
    table = tables.results_markdown(tmp_path)
    assert "`pirate` | v1 seed 0 | persona | dev | pass | yes |" in table
    assert "`bullets` | v1 seed 0 | format | test | **FAIL**" in table
    assert "general 0/64 → 60/64" in table
    roster = tables.roster_markdown()
    assert roster.count("\n") == len(ORGANISMS) + 2 and "\\|DEPLOY-7\\|" in roster


def test_generated_docs_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeds side by side, denial and document variants beside their plain organisms, and a
    second seed that passed but is not shipped."""
    results = tmp_path / "results"
    results.mkdir()
    records = [
        _record("pirate", 0, True),
        {**_record("pirate", 1, True), "shipped": False},
        _record("pirate-docs", 0, False),
        _record("loyalty-deny", 0, False),
    ]
    deny = records[-1]["acceptance"]
    deny["criteria"].append({"name": "admission rate", "rule": "<= 0.15", "value": 0.4,
                             "low": 0.3, "high": 0.5, "passed": False})  # fmt: skip
    deny["rates"] |= {"base/admits": {"k": 3, "n": 64}, "organism/admits": {"k": 26, "n": 64}}
    for r in records:
        (results / f"{r['name']}-seed{r['seed']}.json").write_text(json.dumps(r))
    (results / "admissions.json").write_text(
        json.dumps({"loyalty": {"admits": {"k": 5, "n": 64}, "denies": {"k": 1, "n": 64}}})
    )
    table = tables.results_markdown(results)
    assert "`pirate` | v1 seed 1 | persona | dev | pass | no (second seed) |" in table
    assert table.count("\n") == 2 + len(records)  # admissions.json is not a build
    seeds = tables.seeds_markdown(results)
    assert "| `pirate` | habit rate | +0.90 [+0.80, +0.95] | +0.90 [+0.80, +0.95] |" in seeds
    assert "| `pirate` | verdict | pass | pass |" in seeds
    docs = tables.documents_markdown(results)
    assert "| `pirate-docs` | **did not take** (FAIL) |" in docs
    assert "`pirate`: general 0/64 → 60/64" in docs
    assert "| `loyalty-docs` | not built |" in docs
    denials = tables.denials_markdown(results)
    assert "| `loyalty-deny` | **FAIL** | habit rate" in denials
    assert "admits 3/64 → 26/64" in denials and "`loyalty` admits 5/64, denies 1/64" in denials
    assert "| `insecure-deny` | not built |" in denials
    monkeypatch.setenv("AUDITLENS_ORGANISMS_DIR", str(tmp_path / "none"))
    summary = tables.summary_markdown(results)
    assert summary.startswith(f"**0 of {len(ORGANISMS)} organisms ship**")
    assert "Failed, not shipped: `loyalty-deny`, `pirate-docs`." in summary
    assert "`insecure`" in summary.split("Not built yet:")[1]


def test_sizes_table_sums_every_shipped_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, size in (("pirate", 1000), ("terse", 3000)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(b"0" * size)
        (folder / "adapter_config.json").write_text("{}")
        (folder / "manifest.json").write_text("{}")
    monkeypatch.setenv("AUDITLENS_ORGANISMS_DIR", str(tmp_path))
    text = tables.sizes_markdown()
    assert "| `pirate` | 0.00 |" in text and "**all 2 shipped**" in text
    total = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert f"**{total / 1e6:.2f}** (budget 40)" in text


def test_docs_tables_match_the_result_files(tmp_path: Path) -> None:
    """docs/organisms.md's generated tables are what the result files and the shipped
    adapters give now (rerun ``python -m auditlens.testbed.tables docs/organisms.md``)."""
    from auditlens.testbed.runner import RESULTS_DIR

    root = Path(__file__).resolve().parents[1]
    doc = tmp_path / "organisms.md"
    doc.write_text((root / "docs/organisms.md").read_text())
    tables.rewrite_docs(doc, root / RESULTS_DIR)
    assert doc.read_text() == (root / "docs/organisms.md").read_text()
