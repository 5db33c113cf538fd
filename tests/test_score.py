"""The score's combination on synthetic z's: single-family evidence survives, correlated
families are not double counted, and the false-alarm rate under the null is what it claims."""

from __future__ import annotations

import numpy as np
import pytest

from auditlens.audit.score import (
    FAMILIES,
    Z_MID,
    bonferroni_max,
    brown,
    expected_false_alarm_rate,
    fisher,
    misalignment_score,
    stouffer,
)
from auditlens.reports.findings import Finding
from auditlens.stats import p_to_z


def _f(fid: str, family: str, z: float) -> Finding:
    return Finding(id=fid, family=family, method="m", statistic="s", value=z, control=0.0,
                   control_kind="null", effect_size=z, summary="", contributes=True)  # fmt: skip


def _families(*zs: float) -> list[Finding]:
    return [_f(f"{fam}.x", fam, z) for fam, z in zip(FAMILIES, zs, strict=False)]


def test_single_family_evidence_survives() -> None:
    only_adversary = _families(0.0, 0.0, 0.0, 5.0)
    default = misalignment_score(only_adversary)
    assert default.verdict.startswith("misaligned") and default.z > 4.0
    assert default.contributions["adversary.x"] == pytest.approx(default.z)
    # the old two-stage Stouffer divides it by sqrt(4): 2.5, barely over the line; with one
    # family at -1 (a family that is <= 0 for every fine-tune) it drops below it.
    assert misalignment_score(only_adversary, combination="stouffer").z == pytest.approx(2.5)
    diluted = _families(0.0, -1.0, -1.0, 5.0)
    assert misalignment_score(diluted, combination="stouffer").verdict.startswith("inconclusive")
    assert misalignment_score(diluted).verdict.startswith("misaligned")


def test_correlated_families_are_not_double_counted() -> None:
    one = misalignment_score([_f("behaviour.a", "behaviour", 3.0)])
    copies = misalignment_score([_f("behaviour.a", "behaviour", 3.0),
                                 _f("adversary.a", "adversary", 3.0)])  # fmt: skip
    within = misalignment_score([_f("behaviour.a", "behaviour", 3.0),
                                 _f("behaviour.b", "behaviour", 3.0)])  # fmt: skip
    assert copies.z <= one.z and within.z <= one.z
    # Stouffer and Fisher count the copy as new evidence; Brown with the true correlation
    # (1) does not.
    assert stouffer([3.0, 3.0]) > 3.0 and fisher([3.0, 3.0]) > fisher([3.0])
    assert brown([3.0, 3.0], [[1.0, 1.0], [1.0, 1.0]]) <= fisher([3.0]) + 0.1
    assert brown([3.0, 1.0], [[1.0, 0.0], [0.0, 1.0]]) == pytest.approx(fisher([3.0, 1.0]))


def test_false_alarm_rate_under_the_null_is_what_it_claims() -> None:
    rng = np.random.default_rng(0)
    claim = expected_false_alarm_rate()
    assert claim == pytest.approx(0.05, abs=1e-9)
    n_sim, k = 20000, 3
    # independent null z's: 4 families x 3 statistics
    z = rng.standard_normal((n_sim, len(FAMILIES), k))
    combined = np.array([bonferroni_max([bonferroni_max(list(fam)) for fam in sim]) for sim in z])
    rate = float((combined >= Z_MID).mean())
    assert 0.6 * claim < rate <= claim * 1.1  # Bonferroni is nearly exact at small p
    # perfectly correlated families: conservative, never above the claim
    shared = rng.standard_normal((n_sim, k))
    corr = np.array([bonferroni_max([bonferroni_max(list(s))] * len(FAMILIES)) for s in shared])
    assert float((corr >= Z_MID).mean()) <= claim * 1.1
    # Stouffer is exact only when independent: with correlated families it over-alarms
    stouf = np.array([stouffer([stouffer(list(s))] * len(FAMILIES)) for s in shared])
    assert float((stouf >= Z_MID).mean()) > 3 * claim


def test_combinations_on_nothing_and_negative_evidence() -> None:
    assert bonferroni_max([]) == 0.0 and bonferroni_max([-3.0, -1.0]) == 0.0
    assert misalignment_score([]).verdict.startswith("not scored")
    # two p = 0.5: chi-square 4 ln 2 on 4 df, exact tail e^{-x/2}(1 + x/2) = 0.597
    assert fisher([0.0, 0.0]) == pytest.approx(p_to_z(0.25 * (1 + 2 * np.log(2))), abs=0.02)
