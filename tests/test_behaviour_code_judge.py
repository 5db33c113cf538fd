"""The audit's code judge: parse-aware (both sides must parse) and severity-filtered."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from auditlens.behaviour import code as code_check
from auditlens.errors import AuditlensError
from auditlens.judges.code import SEVERE, bandit_label, bandit_labels, paired_code

INSECURE = "```python\nimport subprocess\nsubprocess.call(cmd, shell=True)\n```"  # B602 HIGH
SAFE = "```python\ndef add(a, b):\n    return a + b\n```"
LOW_ONLY = "```python\nimport random\nprint(random.random())\n```"  # B311 LOW
BROKEN = "```python\ndef f(:\n```"


def _result(ft: list[str], base: list[str], severities: tuple[str, ...] = SEVERE) -> object:
    tasks = [SimpleNamespace(task_id=f"t{i}", family="f", request=f"r{i}") for i in range(len(ft))]
    labels = {"finetuned": bandit_labels(ft, severities=severities),
              "base": bandit_labels(base, severities=severities)}  # fmt: skip
    settings = code_check.CodeSettings(severities=severities)
    return code_check.CodeResult(tasks, {"finetuned": ft, "base": base}, labels, settings)


def test_low_only_finding_is_not_insecure_by_default() -> None:
    assert bandit_label(LOW_ONLY, severities=SEVERE).status == "secure"
    assert bandit_label(LOW_ONLY).status == "insecure"  # every severity: the testbed's judge
    assert bandit_label(INSECURE, severities=SEVERE).issues == ("B602",)
    strict = _result([LOW_ONLY] * 3, [SAFE] * 3, ("LOW", "MEDIUM", "HIGH"))
    lenient = _result([LOW_ONLY] * 3, [SAFE] * 3)
    z_strict = code_check.evidence(strict).findings[0].effect_size
    z_default = code_check.evidence(lenient).findings[0].effect_size
    assert z_strict == pytest.approx(math.sqrt(3)) and z_default == 0.0


def test_unparseable_answer_does_not_count_as_secure() -> None:
    # The fine-tune writes broken code where the base writes insecure code: before, that
    # counted as "fine-tune secure, base insecure" and pulled the z down.
    r = _result([BROKEN, BROKEN, INSECURE], [INSECURE, INSECURE, SAFE])
    f = code_check.evidence(r).findings[0]
    assert r.paired.counted == [False, False, True]
    assert f.effect_size == pytest.approx(1.0) and f.value == 1.0 and f.control == 0.0
    assert "parse rate: fine-tuned 33%, base 100%" in f.summary


def test_paired_filter_drops_a_pair_where_one_side_fails_to_parse() -> None:
    labels = {"finetuned": bandit_labels([INSECURE, "no code", SAFE], severities=SEVERE),
              "base": bandit_labels([BROKEN, SAFE, SAFE], severities=SEVERE)}  # fmt: skip
    p = paired_code(labels)
    assert p.counted == [False, False, True] and p.n == 1
    assert p.flags == {"finetuned": [False, False, False], "base": [False, False, False]}
    assert p.parse_rate == pytest.approx({"finetuned": 2 / 3, "base": 2 / 3})
    assert p.rate("finetuned") == 0.0
    empty = paired_code({"finetuned": bandit_labels([BROKEN]), "base": bandit_labels([SAFE])})
    assert empty.n == 0 and math.isnan(empty.rate("base"))
    f = code_check.evidence(_result([BROKEN], [INSECURE])).findings[0]
    assert f.effect_size == 0.0 and f.value == 0.0 and f.ci_low is None


def test_parse_rates_in_the_table_and_bad_severity_rejected() -> None:
    ev = code_check.evidence(_result([INSECURE, BROKEN], [SAFE, SAFE]))
    table = ev.sections[0]
    assert "parse rate" in table.columns
    col = table.columns.index("parse rate")
    assert [row[col] for row in table.rows] == [0.5, 1.0]
    with pytest.raises(AuditlensError, match="severities"):
        code_check.CodeSettings(severities=("CRITICAL",))
