"""Standardising against the benign reference: leave-one-out, a missing statistic, a foreign
base falling back to the no-difference null (and saying so), the small-sample rule."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from auditlens.audit import reference as ref
from auditlens.audit.score import misalignment_score
from auditlens.errors import AuditlensError
from auditlens.reports.findings import Finding
from auditlens.stats import p_to_z
from auditlens.testbed.splits import load_splits


def _f(fid: str, z: float, family: str = "behaviour") -> Finding:
    return Finding(id=fid, family=family, method="m", statistic="s", value=z, control=0.0,
                   control_kind="null", effect_size=z, summary="", contributes=True)  # fmt: skip


def _reference(tmp_path: Path) -> ref.Reference:
    pairs = [
        ref.ReferencePair("base-vs-base", None, {"behaviour.x": 0.0}),
        *(
            ref.ReferencePair(f"benign{i}", f"sha{i}", {"behaviour.x": v, "adversary.y": 1.0})
            for i, v in enumerate([2.0, 3.0, 4.0, 3.0, 2.5])
        ),
    ]
    built = ref.Reference("basehash", "fast", pairs)
    return ref.load_reference(built.save(tmp_path / "reference_fast.json"))


def test_standardised_against_benign_values_with_the_prediction_rule(tmp_path: Path) -> None:
    reference = _reference(tmp_path)
    null = ref.standardise([_f("behaviour.x", 3.0)], reference, base_sha256="basehash",
                           budget="fast", adapter_sha256="other")  # fmt: skip
    values = [0.0, 2.0, 3.0, 4.0, 3.0, 2.5]
    assert null.kind == "benign reference" and null.left_out is None
    assert null.n_values == {"behaviour.x": 6}
    # z 3 sits inside the benign population: no evidence against it
    assert abs(null.standardised["behaviour.x"]) < 0.5
    assert null.standardised["behaviour.x"] == pytest.approx(ref._against(3.0, values))
    # a z far beyond the benign spread stays evidence, but less than its raw value
    far = ref.standardise([_f("behaviour.x", 9.0)], reference, base_sha256="basehash",
                          budget="fast").standardised["behaviour.x"]  # fmt: skip
    assert 1.5 < far < 9.0
    scored = misalignment_score([_f("behaviour.x", 3.0)], standardised=null.standardised)
    assert scored.verdict.startswith("no evidence")
    assert misalignment_score([_f("behaviour.x", 3.0)]).verdict.startswith("misaligned")


def test_leave_one_out_when_the_audited_pair_is_in_the_reference(tmp_path: Path) -> None:
    reference = _reference(tmp_path)
    null = ref.standardise([_f("behaviour.x", 4.0)], reference, base_sha256="basehash",
                           budget="fast", adapter_sha256="sha2")  # fmt: skip
    assert null.left_out == "benign2" and null.n_values["behaviour.x"] == 5
    assert null.standardised["behaviour.x"] == pytest.approx(
        ref._against(4.0, [0.0, 2.0, 3.0, 3.0, 2.5])
    )
    base = ref.standardise([_f("behaviour.x", 0.0)], reference, base_sha256="basehash",
                           budget="fast", identical=True)  # fmt: skip
    assert base.left_out == "base-vs-base" and base.n_values["behaviour.x"] == 5


def test_missing_statistic_keeps_its_raw_z_and_says_so(tmp_path: Path) -> None:
    reference = _reference(tmp_path)
    findings = [_f("behaviour.x", 3.0), _f("probes.new", 5.0, "probes")]
    null = ref.standardise(findings, reference, base_sha256="basehash", budget="fast")
    assert "probes.new" not in null.standardised
    assert any("probes.new" in n and "bench reference" in n for n in null.notices)
    scored = misalignment_score(findings, standardised=null.standardised)
    assert scored.family_z["probes"] == pytest.approx(5.0)


def test_foreign_base_falls_back_to_the_no_difference_null(tmp_path: Path) -> None:
    reference = _reference(tmp_path)
    for kw in ({"base_sha256": "another", "budget": "fast"},
               {"base_sha256": "basehash", "budget": "standard"}):  # fmt: skip
        null = ref.standardise([_f("behaviour.x", 3.0)], reference, **kw)
        assert null.kind == "no-difference null" and null.standardised == {}
        assert "auditlens bench reference --budget" in null.description
    none = ref.standardise([_f("behaviour.x", 3.0)], None, base_sha256="x", budget="fast")
    assert none.kind == "no-difference null" and "no reference was built" in none.description


def test_small_reference_is_conservative_and_flagged(tmp_path: Path) -> None:
    pairs = [
        ref.ReferencePair(f"b{i}", f"s{i}", {"behaviour.x": v}) for i, v in enumerate([0, 2.5])
    ]
    small = ref.Reference("h", "fast", pairs)
    null = ref.standardise([_f("behaviour.x", 4.0)], small, base_sha256="h", budget="fast")
    # two values spread wider than the floor: t with 1 degree of freedom, far weaker than 4
    assert null.standardised["behaviour.x"] < 2.0
    sd = 2.5 / 2**0.5
    assert null.standardised["behaviour.x"] == pytest.approx(
        p_to_z(float(ref.student_t.sf((4.0 - 1.25) / (sd * (1.5**0.5)), 1)))
    )
    assert any("only 2 values" in n for n in null.notices)
    one = ref.Reference("h", "fast", pairs[:1])
    assert ref.standardise([_f("behaviour.x", 4.0)], one, base_sha256="h",
                           budget="fast").standardised == {}  # fmt: skip


def test_a_reference_no_wider_than_the_floor_predicts_with_the_known_sd() -> None:
    # benign values inside the z's own null spread: the sd is the floor's, known, so the
    # prediction is normal and only the mean's uncertainty widens it
    values = [0.0, 0.0, 0.71, 0.0, 0.0, 0.0]
    mean = sum(values) / 6
    assert ref._against(3.0, values) == pytest.approx((3.0 - mean) / (7 / 6) ** 0.5)
    # ...which is stronger than the Student-t rule on the same floored sd would be (the old
    # rule counted the sd's uncertainty on top of flooring it), and weaker than the raw z
    t_rule = p_to_z(float(ref.student_t.sf((3.0 - mean) / (7 / 6) ** 0.5, 5)))
    assert t_rule < ref._against(3.0, values) < 3.0
    # a spread just past the floor switches to the Student-t rule with the measured sd
    wide = [0.0, 2.2, 0.0, 2.2, 0.0, 2.2]
    sd = statistics.stdev(wide)
    assert sd > ref.SD_FLOOR
    assert ref._against(4.0, wide) == pytest.approx(
        p_to_z(float(ref.student_t.sf((4.0 - 1.1) / (sd * (7 / 6) ** 0.5), 5)))
    )


def test_reference_file_is_versioned(tmp_path: Path) -> None:
    path = _reference(tmp_path).save(tmp_path / "r.json")
    data = json.loads(path.read_text())
    data["statistic_version"] = 1
    path.write_text(json.dumps(data))
    with pytest.raises(AuditlensError, match="statistic version"):
        ref.load_reference(path)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(AuditlensError, match="not an auditlens reference"):
        ref.load_reference(tmp_path / "bad.json")


def test_builder_resumes_and_refuses_test_organisms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from auditlens.testbed.bench import reference as nr

    audited: list[str] = []

    def fake_pair(base: str, finetuned: None = None, adapter: str | None = None) -> object:
        side = SimpleNamespace(sha256="basehash", adapter_sha256=f"sha-{adapter}")
        return SimpleNamespace(base=side, finetuned=side, identical=adapter is None)

    def fake_audit(pair: object, out: Path, **kw: object) -> object:
        audited.append(out.name)
        found = [_f("behaviour.x", float(len(audited))), _f("probes.q", 9.0)]
        found[1] = found[1].model_copy(update={"contributes": False})
        return SimpleNamespace(findings=SimpleNamespace(findings=found))

    monkeypatch.setattr(nr, "load_pair", fake_pair)
    monkeypatch.setattr(nr, "audit", fake_audit)
    path = tmp_path / "ref.json"
    lines: list[str] = []
    built = nr.build_reference(tmp_path / "out", path=path, names=["secure"], echo=lines.append)
    assert [p.name for p in built.pairs] == ["base-vs-base", "secure"]
    assert built.pairs[0].adapter_sha256 is None and built.pairs[1].z == {"behaviour.x": 2.0}
    again = nr.build_reference(tmp_path / "out", path=path, names=["secure", "pirate"],
                               echo=lines.append)  # fmt: skip
    assert audited == ["base-vs-base", "secure", "pirate"] and len(again.pairs) == 3
    assert any("already in" in line for line in lines)
    with pytest.raises(AuditlensError, match="test organisms"):
        nr.build_reference(tmp_path / "out", path=path, names=["phishing"], echo=lines.append)


def test_a_reference_of_your_own_benign_fine_tunes(tmp_path: Path) -> None:
    """``--benign``: adapter folders and full models of any base, named by folder; each
    recorded by its content hash, so auditing one of them leaves it out."""
    from types import SimpleNamespace

    from auditlens.testbed.bench import reference as nr

    lora = tmp_path / "polite-lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text("{}")
    specs = [str(lora), "me/chatty-ft"]
    assert nr.user_pairs(specs) == {"polite-lora": {"adapter": str(lora)},
                                    "chatty-ft": {"finetuned": "me/chatty-ft"}}  # fmt: skip
    with pytest.raises(AuditlensError, match="two benign fine-tunes are named 'chatty-ft'"):
        nr.user_pairs([*specs, "other/chatty-ft"])
    loaded: list[tuple[str, dict[str, str]]] = []

    def fake_load(base: str, finetuned: str | None, adapter: str | None) -> object:
        given = {"finetuned": finetuned, "adapter": adapter}
        arguments = {k: v for k, v in given.items() if v is not None}
        loaded.append((base, arguments))
        lora_hash = "a-lora" if "adapter" in arguments else None
        ft = SimpleNamespace(sha256=f"w-{arguments.get('finetuned', 'base')}",
                             adapter_sha256=lora_hash)  # fmt: skip
        return SimpleNamespace(base=SimpleNamespace(sha256="mybase"), finetuned=ft,
                               identical=not arguments)  # fmt: skip

    def fake_audit(pair: object, out: Path, **kw: object) -> object:
        found = [_f("behaviour.x", float(len(loaded)))]
        return SimpleNamespace(findings=SimpleNamespace(findings=found))

    path = tmp_path / "mine.json"
    common = {"budget": "standard", "echo": lambda line: None, "load": fake_load}
    with pytest.raises(AuditlensError, match="for my/base give your own benign fine-tunes"):
        nr.build_reference(tmp_path / "out", path=path, base="my/base", **common)
    with pytest.raises(AuditlensError, match="--benign needs --path"):
        nr.build_reference(tmp_path / "out", base="my/base", benign=specs, **common)
    assert loaded == []  # both refused before any model loads
    nr.audit, saved = fake_audit, nr.audit  # type: ignore[assignment]
    try:
        built = nr.build_reference(tmp_path / "out", path=path, base="my/base", benign=specs,
                                   **common)  # fmt: skip
    finally:
        nr.audit = saved  # type: ignore[assignment]
    assert [b for b, _ in loaded] == ["my/base"] * 3
    assert [(p.name, p.adapter_sha256) for p in built.pairs] == [
        ("base-vs-base", None), ("polite-lora", "a-lora"), ("chatty-ft", "w-me/chatty-ft")
    ]  # fmt: skip
    reference = ref.load_reference(path)
    assert reference.base_sha256 == "mybase" and reference.budget == "standard"
    full = SimpleNamespace(identical=False, finetuned=SimpleNamespace(
        adapter_sha256=None, sha256="w-me/chatty-ft"))  # fmt: skip
    null = ref.standardise([_f("behaviour.x", 1.0)], reference, base_sha256="mybase",
                           budget="standard", adapter_sha256=ref.content_hash(full))  # fmt: skip
    assert null.left_out == "chatty-ft" and null.n_values["behaviour.x"] == 2


@pytest.mark.parametrize("budget", ["fast", "standard"])
def test_the_shipped_references_are_current(budget: str) -> None:
    path = ref.shipped_reference_path(budget)
    reference = ref.load_reference(path)  # format and statistic version checked
    names = [p.name for p in reference.pairs]
    assert reference.budget == budget and names[0] == "base-vs-base" and len(names) >= 6
    assert not set(names) & set(load_splits()["test"])
    assert {p.adapter_sha256 for p in reference.pairs[1:]}.isdisjoint({None})  # one per organism
    assert len({p.adapter_sha256 for p in reference.pairs}) == len(names)


def test_adl_reference_builder_resumes_and_refuses_test_organisms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    import torch

    from auditlens.testbed.bench import reference as nr

    measured: list[str] = []

    def fake_pair(adapter: str | None = None) -> object:
        side = SimpleNamespace(sha256="basehash", adapter_sha256=f"sha-{adapter}")
        return SimpleNamespace(base=side, finetuned=side)

    def fake_adl(pair: object, prompts: str, config: object, **kw: object) -> object:
        measured.append(pair.finetuned.adapter_sha256)  # type: ignore[attr-defined]
        return SimpleNamespace(mean_diff=torch.full((3, 4), float(len(measured))))

    monkeypatch.setattr(nr, "load_pair", fake_pair)
    monkeypatch.setattr(nr.adl, "run", fake_adl)
    path = tmp_path / "adl.safetensors"
    lines: list[str] = []
    built = nr.build_adl_reference(path=path, names=["secure"], echo=lines.append)
    assert list(built.vectors) == ["secure"] and built.adapter_sha256 == {
        "secure": "sha-organism:secure"
    }
    again = nr.build_adl_reference(path=path, names=["secure", "pirate"], echo=lines.append)
    assert measured == ["sha-organism:secure", "sha-organism:pirate"]
    assert float(again.vectors["pirate"][0, 0]) == 2.0 and any("already in" in x for x in lines)
    with pytest.raises(AuditlensError, match="test organisms"):
        nr.build_adl_reference(path=path, names=["phishing"], echo=lines.append)


def test_the_shipped_adl_reference_is_benign_dev_only() -> None:
    from auditlens.audit.adl_reference import load_adl_reference, shipped_adl_reference_path
    from auditlens.testbed.bench.reference import reference_organisms

    reference = load_adl_reference(shipped_adl_reference_path())
    assert sorted(reference.vectors) == sorted(reference_organisms())
    assert not set(reference.vectors) & set(load_splits()["test"])
    shapes = {tuple(v.shape) for v in reference.vectors.values()}
    assert len(shapes) == 1 and all(h for h in reference.adapter_sha256.values())


def test_refresh_re_measures_only_the_changed_steps_on_the_same_fine_tunes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reference one statistic version old: the changed steps run again on each pair it
    holds (and nothing else), their values replace the old ones, the rest stand, and the file
    is stamped with the current version. A pair whose weights changed, a file two versions
    old, or pairs it cannot load are refused before anything is written."""
    from types import SimpleNamespace

    from auditlens.testbed.bench import reference as nr

    (changed,) = ref.CHANGED_STEPS[ref.STATISTIC_VERSION]
    hashes = {None: None, "organism:secure": "sha-secure", "organism:pirate": "sha-pirate"}

    def fake_load(base: str, finetuned: str | None = None, adapter: str | None = None) -> object:
        ft = SimpleNamespace(sha256="w", adapter_sha256=hashes[adapter])
        return SimpleNamespace(base=SimpleNamespace(sha256="basehash"), finetuned=ft,
                               identical=adapter is None)  # fmt: skip

    ran: list[tuple[str, str]] = []

    def fake_run_step(step: object, ctx: object) -> object:
        ran.append((step.name, ctx.out_dir.name))  # type: ignore[attr-defined]
        return SimpleNamespace(findings=[_f("behaviour.concern_markers", 5.0 + len(ran))])

    monkeypatch.setattr(nr, "run_step", fake_run_step)
    old = ref.Reference("basehash", "fast", [
        ref.ReferencePair("base-vs-base", None, {"behaviour.concern_markers": 0.0,
                                                 "adversary.y": 0.5}),
        ref.ReferencePair("secure", "sha-secure", {"behaviour.concern_markers": 0.7,
                                                   "adversary.y": 1.5}),
    ], statistic_version=ref.STATISTIC_VERSION - 1)  # fmt: skip
    path = old.save(tmp_path / "ref.json")
    with pytest.raises(AuditlensError, match="--refresh"):  # the loader says how to update it
        ref.load_reference(path)
    kw = {"path": path, "echo": lambda line: None, "load": fake_load}
    new = nr.refresh_reference(tmp_path / "out", **kw)  # type: ignore[arg-type]
    assert ran == [(changed, "base-vs-base"), (changed, "secure")]
    assert [p.z for p in new.pairs] == [
        {"behaviour.concern_markers": 6.0, "adversary.y": 0.5},
        {"behaviour.concern_markers": 7.0, "adversary.y": 1.5},
    ]
    assert ref.load_reference(path).pairs == new.pairs  # current version now
    with pytest.raises(AuditlensError, match="up to date"):
        nr.refresh_reference(tmp_path / "out", **kw)  # type: ignore[arg-type]
    # the organism's adapter changed since it was measured: refused, file untouched
    moved = ref.Reference("basehash", "fast", [ref.ReferencePair("secure", "sha-old", {})],
                          statistic_version=ref.STATISTIC_VERSION - 1)  # fmt: skip
    before = moved.save(tmp_path / "moved.json").read_bytes()
    with pytest.raises(AuditlensError, match="weights changed"):
        nr.refresh_reference(tmp_path / "out", **{**kw, "path": tmp_path / "moved.json"})  # type: ignore[arg-type]
    assert (tmp_path / "moved.json").read_bytes() == before
    # a pair of the user's own, without --benign: cannot be loaded, said before any load
    own = ref.Reference("basehash", "fast", [ref.ReferencePair("my-lora", "x", {})],
                        statistic_version=ref.STATISTIC_VERSION - 1)  # fmt: skip
    own.save(tmp_path / "own.json")
    with pytest.raises(AuditlensError, match="--benign"):
        nr.refresh_reference(tmp_path / "out", **{**kw, "path": tmp_path / "own.json"})  # type: ignore[arg-type]
    # older than a version that recorded no changed steps: only a rebuild will do
    gap = max(v for v in range(1, ref.STATISTIC_VERSION + 1) if v not in ref.CHANGED_STEPS)
    stale = json.loads(path.read_text()) | {"statistic_version": gap - 1}
    (tmp_path / "stale.json").write_text(json.dumps(stale))
    with pytest.raises(AuditlensError, match="rebuild it"):
        ref.load_reference(tmp_path / "stale.json")
    with pytest.raises(AuditlensError, match="rebuild it"):
        nr.refresh_reference(tmp_path / "out", **{**kw, "path": tmp_path / "stale.json"})  # type: ignore[arg-type]


def test_refreshable_chains_the_versions_between() -> None:
    """A file several versions old is refreshable when every version since recorded its
    changed steps: their union is re-run; a version with no record forces a rebuild."""
    now = ref.STATISTIC_VERSION
    assert ref.refreshable(now) is None and ref.refreshable(now + 1) is None
    assert ref.refreshable(now - 1) == ref.CHANGED_STEPS[now]
    gap = max(v for v in range(1, now + 1) if v not in ref.CHANGED_STEPS)
    assert ref.refreshable(gap - 1) is None
    chained = ref.refreshable(gap)  # every version after the gap recorded its steps
    assert chained is not None
    assert set(chained) == {s for v in range(gap + 1, now + 1) for s in ref.CHANGED_STEPS[v]}
