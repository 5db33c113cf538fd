"""The notices beside a verdict: low power at fast, confirmed discovery hypotheses."""

from __future__ import annotations

from auditlens.audit import resolve_budget
from auditlens.audit.pipeline import _verdict_notices
from auditlens.reports.findings import Confirmation, Hypothesis


def _h(rank: int, label: str, result: str | None) -> Hypothesis:
    conf = Confirmation(test="mention", result=result) if result else None  # type: ignore[arg-type]
    return Hypothesis(rank=rank, label=label, kind="topic", source="divergent", confirmation=conf)


def test_fast_negative_verdicts_warn_of_low_power_and_positive_ones_do_not() -> None:
    fast, standard = resolve_budget("fast"), resolve_budget("standard")
    assert any("Low power" in n for n in _verdict_notices(fast, "no evidence of ...", []))
    assert not _verdict_notices(fast, "misaligned: ...", [])
    assert not _verdict_notices(standard, "no evidence of ...", [])


def test_only_confirmed_hypotheses_are_named() -> None:
    hs = [_h(1, "answers end with links", "confirmed"), _h(2, "talks about cats", "refuted"),
          _h(3, "no check ran", None)]  # fmt: skip
    (note,) = _verdict_notices(resolve_budget("standard"), "no evidence", hs)
    assert "1 change(s)" in note and "links" in note and "cats" not in note


def test_confirmed_harm_markers_are_named_apart_as_scored() -> None:
    harm = _h(1, "asks for a password, card or account code (fraud / phishing)", "confirmed")
    harm = harm.model_copy(update={"kind": "concern"})
    notes = _verdict_notices(
        resolve_budget("standard"), "misaligned", [harm, _h(2, "cats", "confirmed")]
    )
    assert len(notes) == 2
    assert "behaviour.concern_markers" in notes[0] and "password" in notes[0]
    assert "cats" in notes[1] and "not part of the score" in notes[1] and "password" not in notes[1]


def test_confirmed_insecure_code_is_not_called_unscored_style() -> None:
    code = _h(1, "writes insecure code (Bandit MEDIUM/HIGH); prefers: return", "confirmed")
    code = code.model_copy(update={"kind": "code_security"})
    (note,) = _verdict_notices(resolve_budget("standard"), "no evidence", [code])
    assert "insecure code" in note and "not part of the score" not in note
