"""The code judge in worker processes, overlapped with generation.

:class:`CodeJudgePool` takes texts as generation batches finish (:meth:`CodeJudgePool.submit`
fits the ``on_batch`` callback of :func:`auditlens.generate.generate`, and
:meth:`CodeJudgePool.submit_side` the one of :func:`auditlens.generate.generate_pair`), labels
them with Bandit in a ``spawn`` process pool while the next batch generates, and hands the
labels back in the order the caller asks for (:meth:`CodeJudgePool.results`), whatever order
the workers finished in. Only text goes to the workers and only JSON-able dicts come back: no
model, tensor or judge object crosses the process boundary. ``workers=0`` labels in-process
(at submit time), which gives the same labels.

Measured (docs/benchmarks.md, "Code judge overlapped with generation"; 2-core CPU under
load): Bandit takes 0.3-1.1 ms per completion, so the fast audit's ~200 completions cost well
under a second of a generation measured in minutes, while a worker's start costs 2.5-6 s
(spawn re-imports the parent's main module, and Bandit). The pool pays off only when judging
is slow relative to generation (many long completions on a GPU) and a core is spare;
``workers=0`` is the right setting on a CPU.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Collection, Hashable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from types import TracebackType
from typing import Any

from auditlens.errors import AuditlensError
from auditlens.judges.code import INFORMATIONAL_TESTS, BanditResult, bandit_label

__all__ = ["CodeJudgePool", "judge_texts", "label_texts"]


def _to_json(result: BanditResult) -> dict[str, Any]:
    return {"status": result.status, "issues": list(result.issues), "code": result.code}


def _from_json(data: dict[str, Any]) -> BanditResult:
    return BanditResult(data["status"], tuple(data["issues"]), data["code"])


def label_texts(texts: list[str], ignore: list[str]) -> list[dict[str, Any]]:
    """Worker entry point: Bandit labels of ``texts`` as JSON-able dicts, in order."""
    return [_to_json(bandit_label(t, ignore)) for t in texts]


def _warm_up() -> None:
    """Worker initializer: build Bandit's test set before the first texts arrive."""
    bandit_label("x = 1\n")


class CodeJudgePool:
    """Bandit labels computed while generation goes on, returned in a deterministic order.

    Use as a context manager (the workers are shut down on exit). Keys are any hashable
    values the caller chooses (prompt indices, ``(side, index)`` pairs); each key may be
    submitted once.
    """

    def __init__(self, workers: int = 0, ignore: Collection[str] = INFORMATIONAL_TESTS.keys()):
        if workers < 0:
            raise AuditlensError(f"workers must be >= 0, got {workers}")
        self.workers = workers
        self.ignore = sorted(ignore)
        self._done: dict[Hashable, BanditResult] = {}
        self._pending: list[tuple[list[Hashable], Future[list[dict[str, Any]]]]] = []
        self._executor: ProcessPoolExecutor | None = None
        if workers:
            self._executor = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_warm_up,
            )

    def __enter__(self) -> CodeJudgePool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(cancel=exc_type is not None)

    def close(self, *, cancel: bool = False) -> None:
        """Stop the workers (waiting for submitted work unless ``cancel``)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=cancel)
            self._executor = None

    def submit(self, keys: Iterable[Hashable], texts: Sequence[str]) -> None:
        """Queue ``texts`` for labelling under ``keys`` (one key per text)."""
        key_list = list(keys)
        if len(key_list) != len(texts):
            raise AuditlensError(f"{len(key_list)} keys for {len(texts)} texts")
        seen = set(self._done).union(*(set(k) for k, _ in self._pending))
        repeated = [k for k in key_list if k in seen]
        if repeated or len(set(key_list)) != len(key_list):
            raise AuditlensError(f"judge keys submitted twice: {repeated[:3] or key_list[:3]}")
        if not texts:
            return
        if self._executor is None:
            for key, data in zip(key_list, label_texts(list(texts), self.ignore), strict=True):
                self._done[key] = _from_json(data)
            return
        future = self._executor.submit(label_texts, list(texts), self.ignore)
        self._pending.append((key_list, future))

    def submit_side(self, side: str, indices: Sequence[int], texts: Sequence[str]) -> None:
        """``submit`` under ``(side, index)`` keys: the ``on_batch`` of ``generate_pair``."""
        self.submit([(side, i) for i in indices], texts)

    def _collect(self) -> None:
        for keys, future in self._pending:
            for key, data in zip(keys, future.result(), strict=True):
                self._done[key] = _from_json(data)
        self._pending = []

    def results(self, keys: Iterable[Hashable]) -> list[BanditResult]:
        """The labels of ``keys``, in that order (waits for the workers)."""
        self._collect()
        out = []
        for key in keys:
            if key not in self._done:
                raise AuditlensError(f"no judge label for {key!r} (never submitted)")
            out.append(self._done[key])
        return out

    def side_results(self, side: str, n: int) -> list[BanditResult]:
        """The labels of ``(side, 0..n-1)``."""
        return self.results((side, i) for i in range(n))


def judge_texts(
    texts: Sequence[str],
    *,
    workers: int = 0,
    ignore: Collection[str] = INFORMATIONAL_TESTS.keys(),
) -> list[BanditResult]:
    """Bandit labels of ``texts`` in order: in-process (``workers=0``, as
    :func:`~auditlens.judges.code.bandit_labels`) or split over ``workers`` processes."""
    if workers == 0:
        return [bandit_label(t, ignore) for t in texts]
    chunk = max(1, -(-len(texts) // (4 * workers)))
    with CodeJudgePool(workers, ignore) as pool:
        for lo in range(0, len(texts), chunk):
            pool.submit(range(lo, min(lo + chunk, len(texts))), texts[lo : lo + chunk])
        return pool.results(range(len(texts)))
