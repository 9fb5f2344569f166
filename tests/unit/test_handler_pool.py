"""dubbok._serving.HandlerPool: the sync provider's handler threads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from dubbok._serving import HandlerPool
from dubbok.testing import wait_until


@pytest.fixture
def pool() -> Iterator[HandlerPool]:
    p = HandlerPool(4, thread_name_prefix="test-pool")
    yield p
    p.shutdown(wait=True)


def test_submit_gives_a_future_with_the_result_or_the_exception(pool: HandlerPool) -> None:
    assert pool.submit(lambda a, b=0: a + b, 2, b=3).result(timeout=5) == 5
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(timeout=5)


def test_calls_up_to_max_workers_run_at_once_even_queued_in_a_burst(pool: HandlerPool) -> None:
    # Four calls that can only finish together: any one left waiting behind another fails
    # the barrier. They are queued in one burst, before any thread has started.
    barrier = threading.Barrier(4)
    futures = [pool.submit(barrier.wait, 5) for _ in range(4)]
    assert sorted(f.result(timeout=10) for f in futures) == [0, 1, 2, 3]
    assert pool.threads == 4


def test_an_idle_thread_is_reused_not_added_to(pool: HandlerPool) -> None:
    for i in range(20):
        assert pool.submit(lambda i=i: i).result(timeout=5) == i
        # the thread counts itself idle just after it completes the future
        assert wait_until(lambda: pool.idle == 1, 5)
    assert pool.threads == 1


def test_calls_beyond_max_workers_wait_and_all_run(pool: HandlerPool) -> None:
    gate = threading.Event()
    lock = threading.Lock()
    running = [0, 0]  # now, peak

    def held(i: int) -> int:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        gate.wait(10)
        with lock:
            running[0] -= 1
        return i

    futures = [pool.submit(held, i) for i in range(12)]
    assert wait_until(lambda: running[0] == 4, 10)
    gate.set()
    assert [f.result(timeout=10) for f in futures] == list(range(12))
    assert running[1] == 4
    assert pool.threads == 4
    # the backlog is settled: a burst of four again runs at once on the same threads
    barrier = threading.Barrier(4)
    again = [pool.submit(barrier.wait, 5) for _ in range(4)]
    assert sorted(f.result(timeout=10) for f in again) == [0, 1, 2, 3]
    assert pool.threads == 4


def test_a_raising_run_is_logged_and_its_thread_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    pool = HandlerPool(1, thread_name_prefix="test-pool-raise")

    def broken() -> None:
        raise RuntimeError("boom")

    try:
        with caplog.at_level(logging.ERROR, logger="dubbok._serving"):
            pool.run(broken)
            # one thread only: this runs on the thread the failure came from
            assert pool.submit(lambda: "still here").result(timeout=5) == "still here"
        assert any("raised" in r.getMessage() and r.exc_info for r in caplog.records)
        assert pool.threads == 1
    finally:
        pool.shutdown()


def test_shutdown_ends_every_thread_after_what_was_queued() -> None:
    pool = HandlerPool(2, thread_name_prefix="test-pool-stop")
    gate = threading.Event()
    futures = [pool.submit(gate.wait, 10) for _ in range(5)]  # two run, three queued
    pool.shutdown(wait=False)
    gate.set()
    assert all(f.result(timeout=10) is True for f in futures)
    assert wait_until(
        lambda: not [t for t in threading.enumerate() if t.name.startswith("test-pool-stop")], 10
    )
    with pytest.raises(RuntimeError, match="shut down"):
        pool.run(print)
    pool.shutdown()  # again: nothing to do


def test_max_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        HandlerPool(0)


def test_a_thread_that_cannot_start_refuses_the_call_and_the_pool_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = HandlerPool(1, thread_name_prefix="test-pool-nothread")
    ran: list[str] = []
    start = threading.Thread.start

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    try:
        monkeypatch.setattr(threading.Thread, "start", refuse)
        with pytest.raises(RuntimeError, match="can't start"):
            pool.run(ran.append, "refused")
        assert pool.threads == 0
        monkeypatch.setattr(threading.Thread, "start", start)
        assert pool.submit(ran.append, "taken").result(timeout=5) is None
        assert ran == ["taken"]  # the refused call was not queued
        assert pool.threads == 1
    finally:
        pool.shutdown()


def test_shutdown_waits_only_for_threads_that_started() -> None:
    pool = HandlerPool(3, thread_name_prefix="test-pool-join")
    futures = [pool.submit(lambda: None) for _ in range(3)]
    for future in futures:
        future.result(timeout=5)
    pool.shutdown(wait=True)  # joins every thread it counted; none is unstarted
    assert not [t for t in threading.enumerate() if t.name.startswith("test-pool-join")]
