"""The code judge in worker processes: the same labels, in the order asked for."""

from __future__ import annotations

import pytest

from auditlens.errors import AuditlensError
from auditlens.judges.code import bandit_label, bandit_labels, fence
from auditlens.judges.pool import CodeJudgePool, judge_texts

TEXTS = [
    fence("import os\nos.system(cmd)"),
    fence("def add(a, b):\n    return a + b"),
    "no code here at all",
    fence("import pickle\npickle.loads(data)"),
    fence("x = eval(input())"),
    fence("def f(:\n  pass"),
    fence("import subprocess\nsubprocess.run(['ls'])"),
]


@pytest.mark.parametrize("workers", [0, 1])
def test_pool_labels_equal_in_process_labels_in_key_order(workers: int) -> None:
    expected = [bandit_label(t) for t in TEXTS]
    assert {r.status for r in expected} == {"insecure", "secure", "unparseable"}
    with CodeJudgePool(workers=workers) as pool:
        pool.submit([4, 5, 6], TEXTS[4:])  # batches arrive out of order
        pool.submit([0, 1], TEXTS[:2])
        pool.submit([2, 3], TEXTS[2:4])
        assert pool.results(range(len(TEXTS))) == expected
        assert pool.results([3, 0]) == [expected[3], expected[0]]
        pool.submit_side("base", [0, 1], TEXTS[:2])
        pool.submit_side("finetuned", [1, 0], [TEXTS[4], TEXTS[3]])
        assert pool.side_results("finetuned", 2) == [expected[3], expected[4]]
        assert pool.side_results("base", 2) == expected[:2]
        with pytest.raises(AuditlensError, match="twice"):
            pool.submit([0], TEXTS[:1])
        with pytest.raises(AuditlensError, match="never submitted"):
            pool.results([99])
        with pytest.raises(AuditlensError, match="keys for"):
            pool.submit([7, 8], TEXTS[:1])


def test_judge_texts_with_workers_matches_in_process() -> None:
    assert judge_texts(TEXTS, workers=2) == judge_texts(TEXTS) == bandit_labels(TEXTS)
    with pytest.raises(AuditlensError):
        CodeJudgePool(workers=-1)
