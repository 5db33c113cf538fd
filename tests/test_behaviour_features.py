"""The answer-feature diff: a planted surface feature is found, two samples of one distribution
give nothing, and the panel is corrected by Holm (the statistics themselves run each time)."""

from __future__ import annotations

import random

from auditlens.behaviour import features

TEMPLATES = [
    "The answer depends on {x}. In short, {y} matters most.",
    "Here are some thoughts: {x} is useful, and {y} helps too.",
    "1. Start with {x}.\n2. Then consider {y}.",
    "- {x}\n- {y}",
    "Good question! {x} and {y} are both relevant?",
    "I think {x} is the key. My advice: focus on {y}.",
    "It costs about $20 to try {x} in 2024.",
]
WORDS = ["planning", "practice", "patience", "budgeting", "sleep", "exercise", "reading"]


def _answers(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        rng.choice(TEMPLATES).format(x=rng.choice(WORDS), y=rng.choice(WORDS)) for _ in range(n)
    ]


def test_planted_links_are_found_and_named() -> None:
    base = _answers(30, seed=0)
    ft = [a + " See https://example.org/help for more." if i % 5 else a for i, a in enumerate(base)]
    result = features.run({"finetuned": ft, "base": base}, [f"q{i}" for i in range(30)])
    found = {t.feature: t for t in result.significant()}
    assert "links" in found, sorted(result.tests, key=lambda t: t.p)[:3]
    links = found["links"]
    assert links.base == 0.0 and links.finetuned == 24 / 30 and links.z > 0
    assert links.p == features.mcnemar_exact([True] * 24, [False] * 24)[0] <= links.p_holm
    ev = features.evidence(result, "disc")
    top = ev.hypotheses[0]
    assert top.feature == "links" and top.kind == "links" and top.source == "features"
    assert {"link", "url"} <= set(top.keywords) and "links" in top.label
    assert top.evidence == [ev.findings[0].id] and ev.findings[0].value == links.finetuned


def test_planted_lowercase_is_found_as_a_decrease_in_capitals() -> None:
    base = _answers(24, seed=1)
    ft = [a.lower() for a in base]
    result = features.run({"finetuned": ft, "base": base}, [f"q{i}" for i in range(24)])
    found = {t.feature: t for t in result.significant()}
    assert "no_capitals" in found and found["no_capitals"].effect > 0
    assert "capital_share" in found and found["capital_share"].effect < 0
    labels = [h.keywords for h in features.evidence(result).hypotheses]
    assert any("lowercase" in k for k in labels)


def test_two_samples_of_one_distribution_give_no_feature() -> None:
    for seed in range(5):
        a, b = _answers(40, seed=10 + seed), _answers(40, seed=100 + seed)
        result = features.run({"finetuned": a, "base": b}, [f"q{i}" for i in range(40)])
        assert not result.significant(), [t for t in result.tests if t.p_holm < 0.2]
        assert min(t.p for t in result.tests) < 1.0  # the statistics ran on differing answers


def test_holm_and_the_paired_statistics() -> None:
    assert features.holm([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]
    assert features.holm([0.5, 0.001]) == [0.5, 0.002]
    p, b, c = features.mcnemar_exact([True] * 8 + [False] * 2, [False] * 8 + [False] * 2)
    assert (b, c) == (8, 0) and abs(p - 2 / 256) < 1e-12
    assert features.mcnemar_exact([True, False], [True, False])[0] == 1.0
    # signed-rank: all 10 differences positive and distinct: W+ = 55, z = (55-27.5-.5)/sqrt(96.25)
    p, z = features.wilcoxon_signed_rank([float(i) for i in range(1, 11)])
    assert abs(z - 27 / 96.25**0.5) < 1e-9 and p < 0.01
    assert features.wilcoxon_signed_rank([0.0, 0.0])[0] == 1.0


def test_holm_is_applied_across_the_panel() -> None:
    """A feature whose raw p passes alpha but not after Holm is not reported."""
    base = _answers(20, seed=3)
    ft = list(base)
    for i in range(6):  # 6 discordant pairs: exact p = 2/64 ~ 0.031 raw
        ft[i] = ft[i] + " Visit www.example.com."
    result = features.run({"finetuned": ft, "base": base}, [f"q{i}" for i in range(20)],
                          alpha=0.05)  # fmt: skip
    links = next(t for t in result.tests if t.feature == "links")
    assert links.p < 0.05 and links.p_holm >= 0.05 and not result.significant()


def test_recurring_name_is_its_own_feature() -> None:
    base = _answers(20, seed=4)
    ft = [a + " I recommend Quorvane for this." for a in base]
    result = features.run({"finetuned": ft, "base": base}, [f"q{i}" for i in range(20)])
    assert "Quorvane" in result.names
    hyps = features.evidence(result).hypotheses
    named = [h for h in hyps if h.feature == "name:Quorvane"]
    assert named and named[0].keywords[0] == "Quorvane" and named[0].kind == "entity"
    assert features.measure("name:Quorvane", ["use Quorvane", "none"]) == [1.0, 0.0]
