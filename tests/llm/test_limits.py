"""The shared rate limiter on a real Redis, its clock faked so minutes pass in milliseconds.

Each test runs its own event loop (asyncio.run) with three limiters on one key: three
workers sharing a provider.
"""

from __future__ import annotations

import asyncio
import bisect
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis import asyncio as aioredis

from app.llm.limits import Limits, SharedLimiter, WaitTooLong, limiter_key
from tests.services import REDIS_URL


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


Body = Callable[[Clock, Callable[[Limits], SharedLimiter]], Awaitable[None]]


def with_limiters(body: Body) -> None:
    async def main() -> None:
        clock = Clock()
        client = aioredis.from_url(REDIS_URL)
        key = limiter_key("test", f"model-{uuid.uuid4().hex[:8]}", "sk-secret")
        try:
            await body(clock, lambda limits: SharedLimiter(client, key, limits, clock=clock))
        finally:
            await client.delete(key, f"{key}:inflight")
            await client.aclose()

    asyncio.run(main())


def max_in_window(times: list[float], window: float = 60.0) -> int:
    """The most events inside any half-open window of ``window`` seconds."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered)), default=0
    )


def test_three_workers_never_exceed_the_requests_per_minute() -> None:
    async def body(clock: Clock, make: Callable[[Limits], SharedLimiter]) -> None:
        workers = [make(Limits(rpm=120, max_concurrency=64)) for _ in range(3)]
        admitted: list[float] = []
        for _ in range(3000):  # 300 simulated seconds in 0.1 s steps, each worker asking
            for worker in workers:
                slot, _wait = await worker.try_acquire(10)
                if slot is not None:
                    admitted.append(clock.now)
                    await worker.release(slot, ok=True, used_tokens=10)
            clock.now += 0.1
        assert max_in_window(admitted) <= 120
        assert len(admitted) >= 0.95 * 120 * 5  # and the budget is used, not wasted

    with_limiters(body)


def test_tokens_per_minute_count_the_estimate_and_give_back_what_was_not_used() -> None:
    async def body(clock: Clock, make: Callable[[Limits], SharedLimiter]) -> None:
        worker = make(Limits(tpm=60_000, max_concurrency=64))
        taken: list[tuple[float, int]] = []
        for _ in range(1200):  # 120 s
            slot, _wait = await worker.try_acquire(3000)  # prompt estimate + max_tokens
            if slot is not None:
                taken.append((clock.now, 3000))
                await worker.release(slot, ok=True)  # usage unknown: nothing given back
            clock.now += 0.1
        starts = [t for t, _ in taken]
        assert max_in_window(starts) * 3000 <= 60_000 + 3000  # the budget, plus one call
        # Usage known and small: the rest of each estimate returns and more calls fit.
        clock.now += 120
        refunded = 0
        for _ in range(600):
            slot, _wait = await worker.try_acquire(3000)
            if slot is not None:
                refunded += 1
                await worker.release(slot, ok=True, used_tokens=300)
            clock.now += 0.1
        assert refunded > 2 * len([t for t in starts if t < starts[0] + 60])

    with_limiters(body)


def test_a_429_blocks_every_worker_until_retry_after_and_cuts_concurrency_once() -> None:
    async def body(clock: Clock, make: Callable[[Limits], SharedLimiter]) -> None:
        limits = Limits(max_concurrency=16, cut_cooldown=10)
        a, b, c = (make(limits) for _ in range(3))
        # A storm: ten 429s in two seconds cut the limit once, not ten times.
        cuts = []
        for i in range(10):
            clock.now += 0.2
            cuts.append(await (a, b, c)[i % 3].rate_limited(retry_after=30))
        assert cuts.count(True) == 1
        assert (await a.state())["limit"] == 8
        slot, wait = await b.try_acquire(1)
        assert slot is None
        assert wait == pytest.approx(30, abs=0.01)  # from the last 429 of the storm
        clock.now += wait + 0.01
        slot, wait = await c.try_acquire(1)
        assert slot is not None
        await c.release(slot, ok=True)
        # Additive increase: a success adds 1/limit.
        assert (await a.state())["limit"] == pytest.approx(8 + 1 / 8)
        # A worker does not hold its item through a long wait: it is told to give it back.
        await a.rate_limited(retry_after=600)
        with pytest.raises(WaitTooLong):
            await a.acquire(1, max_wait=60)

    with_limiters(body)


def test_concurrency_is_capped_and_a_dead_workers_slots_expire() -> None:
    async def body(clock: Clock, make: Callable[[Limits], SharedLimiter]) -> None:
        worker = make(Limits(max_concurrency=3, slot_seconds=30))
        held = [await worker.try_acquire(1) for _ in range(4)]
        assert [slot is not None for slot, _ in held] == [True, True, True, False]
        assert (await worker.state())["inflight"] == 3
        clock.now += 31  # their worker was killed: the slots lapse
        slot, _wait = await worker.try_acquire(1)
        assert slot is not None
        assert (await worker.state())["inflight"] == 1

    with_limiters(body)


def test_provider_headers_lower_a_bucket_never_raise_it() -> None:
    async def body(_clock: Clock, make: Callable[[Limits], SharedLimiter]) -> None:
        worker = make(Limits(rpm=600, max_concurrency=64))
        slot, _ = await worker.try_acquire(1)
        assert slot is not None
        await worker.observe_headers({"x-ratelimit-remaining-requests": "0"})
        assert (await worker.state())["req"] == 0
        second, wait = await worker.try_acquire(1)
        assert second is None
        assert wait > 0
        await worker.observe_headers({"x-ratelimit-remaining-requests": "500"})
        assert (await worker.state())["req"] == 0

    with_limiters(body)


def test_small_calls_do_not_starve_a_large_one() -> None:
    """Calls of differing cost share one bucket of one size: a call bigger than the bucket
    goes once it is full (leaving it in debt) instead of waiting behind every small one."""

    async def body(clock: Clock, make: Callable[[Limits], SharedLimiter]) -> None:
        worker = make(Limits(tpm=60_000, max_concurrency=64))
        large = small = 0
        for _ in range(1200):  # 120 s, a large and a small caller asking every 0.1 s
            slot, _wait = await worker.try_acquire(3000)
            if slot is not None:
                large += 1
                await worker.release(slot, ok=True)
            slot, _wait = await worker.try_acquire(300)
            if slot is not None:
                small += 1
                await worker.release(slot, ok=True)
            clock.now += 0.1
        assert large >= 10  # the large caller gets a fair part of two minutes' budget
        assert large * 3000 + small * 300 <= 2 * 60_000 + 3000

    with_limiters(body)


def test_a_budget_under_one_a_second_still_flows() -> None:
    async def body(clock: Clock, make: Callable[[Limits], SharedLimiter]) -> None:
        worker = make(Limits(rpm=3, max_concurrency=8, headroom=0))
        admitted = []
        for _ in range(3000):  # 300 s
            slot, _wait = await worker.try_acquire(1)
            if slot is not None:
                admitted.append(clock.now)
                await worker.release(slot, ok=True)
            clock.now += 0.1
        assert max_in_window(admitted) <= 3
        assert len(admitted) >= 2 * 5  # at least two a minute: not one an hour

    with_limiters(body)


def test_a_provider_limit_below_the_configured_one_is_found_and_429s_become_rare() -> None:
    """The provider allows 300 a minute, the configuration says 600: after the first bursts
    of 429s the shared budget settles under the real limit, and 429s fall under 1%."""

    async def body(clock: Clock, make: Callable[[Limits], SharedLimiter]) -> None:
        workers = [make(Limits(rpm=600, max_concurrency=64, cut_cooldown=10)) for _ in range(3)]
        window: list[float] = []  # the provider's own sliding window of 60 s
        outcomes: list[tuple[float, bool]] = []
        for _ in range(20 * 60 * 10):  # 20 simulated minutes in 0.1 s steps
            for worker in workers:
                slot, _wait = await worker.try_acquire(10)
                if slot is None:
                    continue
                while window and window[0] <= clock.now - 60:
                    window.pop(0)
                if len(window) >= 300:
                    outcomes.append((clock.now, False))
                    await worker.release(slot, ok=False)
                    await worker.rate_limited(retry_after=window[0] + 60 - clock.now)
                else:
                    window.append(clock.now)
                    outcomes.append((clock.now, True))
                    await worker.release(slot, ok=True)
            clock.now += 0.1
        start = outcomes[0][0]
        late = [ok for t, ok in outcomes if t > start + 5 * 60]
        assert late.count(False) / len(late) < 0.01, late.count(False)
        # And the budget the provider allows is used, not wasted: over 80% of it.
        assert len(late) > 0.8 * 300 * 15
        assert (await workers[0].state())["rate"] < 0.6

    with_limiters(body)


def test_a_slot_given_as_its_asker_is_cancelled_is_given_back() -> None:
    """The script has run in Redis (the slot is taken) but its answer has not reached the
    caller when the call is cancelled: the slot must not stay taken until its lease ends."""

    async def body(_clock: Clock, make: Callable[[Limits], SharedLimiter]) -> None:
        limiter = make(Limits(rpm=600, max_concurrency=4))
        script = limiter._acquire
        answered = asyncio.Event()

        async def slow_answer(**kwargs: Any) -> Any:
            result = await script(**kwargs)  # taken in Redis
            answered.set()
            await asyncio.sleep(1)  # the answer still on its way
            return result

        limiter._acquire = slow_answer
        asking = asyncio.create_task(limiter.try_acquire(10))
        await answered.wait()
        assert (await limiter.state())["inflight"] == 1
        asking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asking
        assert (await limiter.state())["inflight"] == 0

    with_limiters(body)
