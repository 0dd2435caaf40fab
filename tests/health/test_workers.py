"""Worker statuses: what a process counts of its calls and tasks, published through Redis,
read back and summed for the dashboard and /metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from app.health import workers
from app.health.workers import WorkerStatus
from app.llm.limits import limiter_states
from app.llm.stats import LATENCY_BUCKETS, CallStats, bucket_quantile
from tests.services import REDIS_URL


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_attempts_are_counted_by_outcome_with_their_latency_and_the_last_minute() -> None:
    clock = Clock()
    stats = CallStats(clock=clock)
    for seconds, outcome in ((0.3, "ok"), (0.04, "rate_limited"), (7.0, "ok")):
        with stats.attempt("p") as counted:
            assert stats.snapshot()["p"]["in_flight"] == 1
            clock.now += seconds
            counted["outcome"] = outcome

    def a_bug() -> None:
        with stats.attempt("p"):
            clock.now += 0.2
            raise ValueError("a bug is an error")

    with pytest.raises(ValueError, match="a bug"):
        a_bug()

    async def cancelled() -> None:
        with stats.attempt("p"):
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled())
    figures = stats.snapshot()["p"]
    assert figures["in_flight"] == 0
    assert figures["attempts"] == {"ok": 2, "rate_limited": 1, "error": 1, "cancelled": 1}
    assert figures["latency_sum"] == pytest.approx(7.54)
    # A latency on a bound counts in that bound's bucket (Prometheus' "le").
    expected = [0] * (len(LATENCY_BUCKETS) + 1)
    for seconds in (0.3, 0.04, 7.0, 0.2, 0.0):
        expected[next(i for i, b in enumerate(LATENCY_BUCKETS) if seconds <= b)] += 1
    assert figures["latency_counts"] == expected
    assert figures["minute"]["attempts"]["ok"] == 2

    clock.now += 61  # a minute later: the totals stay, the minute is empty
    later = stats.snapshot()["p"]
    assert later["attempts"]["ok"] == 2
    assert sum(later["minute"]["attempts"].values()) == 0
    assert sum(later["minute"]["latency_counts"]) == 0


def test_a_quantile_is_the_bound_of_the_bucket_it_falls_in() -> None:
    counts = [0] * (len(LATENCY_BUCKETS) + 1)
    assert bucket_quantile(counts, 0.5) is None
    counts[2] = 90  # <= 0.25 s
    counts[6] = 10  # <= 5 s
    assert bucket_quantile(counts, 0.5) == 0.25
    assert bucket_quantile(counts, 0.9) == 0.25
    assert bucket_quantile(counts, 0.95) == 5.0
    counts[-1] = 100
    assert bucket_quantile(counts, 0.99) == float("inf")


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(REDIS_URL)
    yield connection
    connection.close()


def test_a_status_is_published_read_back_summed_and_taken_down(client: redis.Redis) -> None:
    clock = Clock()
    stats = CallStats(clock=clock)
    status = WorkerStatus(stats)
    status.id = f"test-host:{time.monotonic_ns()}"
    with stats.attempt("alpha") as counted:
        clock.now += 0.3
        counted["outcome"] = "ok"
    with stats.attempt("alpha") as counted:
        counted["outcome"] = "rate_limited"
    with status.task("jobs.run_chunk", "job-1"):
        status.publish(client)
        mine = [s for s in workers.read(REDIS_URL) if s["id"] == status.id]
        assert len(mine) == 1
        assert [t["job_id"] for t in mine[0]["tasks"]["running"]] == ["job-1"]
        assert 0 < client.ttl(f"{workers.PREFIX}:{status.id}") <= workers.TTL_SECONDS
    status.publish(client)
    (published,) = [s for s in workers.read(REDIS_URL) if s["id"] == status.id]
    assert published["tasks"]["running"] == []
    assert sum(published["tasks"]["finished"]["jobs.run_chunk"]) == 1

    # Two workers' minutes add up.
    twice = workers.providers([published, published])
    (alpha,) = [p for p in twice if p.name == "alpha"]
    assert (alpha.attempts, alpha.errors, alpha.rate_limited) == (4, 0, 2)
    assert alpha.rate_limited_rate == 0.5

    status.stop(REDIS_URL)
    assert not [s for s in workers.read(REDIS_URL) if s["id"] == status.id]


def test_limiter_states_are_read_with_their_model_whole(client: redis.Redis) -> None:
    key = "priorforge:limits:local:llama3:8b:0123abcd"
    now = time.time()
    client.hset(key, mapping={"limit": 2.5, "rate": 0.25, "blocked_until": now + 30})
    client.zadd(f"{key}:inflight", {"a": now + 60, "b": now + 60, "expired": now - 1})
    try:
        (state,) = [s for s in limiter_states(REDIS_URL, now) if s.provider == "local"]
    finally:
        client.delete(key, f"{key}:inflight")
    assert (state.model, state.key_digest) == ("llama3:8b", "0123abcd")
    assert (state.limit, state.rate, state.in_flight) == (2.5, 0.25, 2)
    assert state.blocked_for == pytest.approx(30)


def _in_child(queue: Any) -> None:
    from app.health.workers import WORKER
    from app.llm.stats import STATS

    # A lock the parent's thread held at the fork would never be released: it must not be.
    acquired = WORKER._lock.acquire(timeout=1) and STATS._lock.acquire(timeout=1)
    if acquired:
        WORKER._lock.release()
        STATS._lock.release()
    queue.put((acquired, STATS.snapshot(), WORKER._thread is None, WORKER.id))


def test_a_forked_child_starts_its_own_status_and_counts() -> None:
    """A prefork pool's child inherits the parent's counters, locks and publishing thread
    field: it must start afresh, or it would never publish (and could hang on a lock)."""
    import multiprocessing
    import os

    from app.health.workers import WORKER
    from app.llm.stats import STATS

    with STATS.attempt("parent-only") as counted:
        counted["outcome"] = "ok"
    held = STATS._lock
    held.acquire()  # as if another thread of the parent held it at the fork
    WORKER._thread = object()  # type: ignore[assignment]  # as if the parent published
    try:
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_in_child, args=(queue,))
        child.start()
        acquired, counts, no_thread, child_id = queue.get(timeout=10)
        child.join(timeout=10)
    finally:
        held.release()
        WORKER._thread = None
    assert acquired
    assert "parent-only" not in counts
    assert no_thread
    assert child_id.endswith(f":{child.pid}")
    assert child_id != f"{WORKER.id.rsplit(':', 1)[0]}:{os.getpid()}"


def test_a_status_of_another_shape_is_left_out_not_an_error(client: redis.Redis) -> None:
    """A worker of another version mid-deploy publishes what this one cannot read: the pages
    and /metrics leave it out rather than answer 500."""
    key = f"{workers.PREFIX}:odd-{time.monotonic_ns()}"
    client.set(key, '{"id": "odd", "llm": {"p": {"minute": {}}}}', ex=5)
    client.set(f"{key}-2", "not json", ex=5)
    try:
        statuses = workers.read(REDIS_URL)
        assert not [s for s in statuses if s.get("id") == "odd"]
        workers.providers(statuses)  # no KeyError
    finally:
        client.delete(key, f"{key}-2")
