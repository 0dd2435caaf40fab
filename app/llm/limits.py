"""One rate limiter per provider, model and API key, shared by every worker through Redis.

- **Budgets**: requests per minute and tokens per minute (less a 3% headroom), two buckets
  that refill continuously. A call takes one request and its token estimate (prompt estimate plus
  ``max_tokens``) from both or from neither, atomically; when either is short it learns how
  long to wait. The buckets hold one second's worth and refill at the rest of the minute's
  budget, so no 60-second window sees more requests than the budget. For tokens a call goes
  once the bucket is out of debt and takes its whole estimate, leaving it in debt: calls of
  every size wait alike (small ones cannot starve a large one), and a 60-second window holds
  at most the budget plus one call. Once a call's usage is known, the unused part of its
  estimate goes back.
- **A 429** blocks every worker until its ``Retry-After`` (or a default), halves the shared
  concurrency limit and cuts the budgets in effect to ``rate_cut`` of what they were, once
  per burst: no second cut within ``cut_cooldown`` seconds of the last. Each success grows
  the limit by 1/limit and the budgets back towards the configured ones (AIMD), so a
  provider whose real limit is below the configured one is found, and its 429s become rare.
- **Concurrency**: calls in flight are members of a sorted set scored by when they expire, so
  the slots of a worker that died free themselves.
- **Provider headers**: ``x-ratelimit-remaining-requests`` / ``-tokens`` bring a bucket down
  to what the provider says is left, never up.

Every decision happens in one Lua script per operation, so workers on any number of machines
see one limiter. Time comes from the caller (``clock``): the tests run it on a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# KEYS[1] state hash. ARGV: now, rpm, tpm, cost, ceiling, slot, slot_ttl.
# Returns {admitted (0/1), wait seconds as a string}.
_ACQUIRE = """
local now = tonumber(ARGV[1])
local rpm, tpm, cost = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ceiling = tonumber(ARGV[5])
local state = KEYS[1]
local inflight = KEYS[1] .. ':inflight'
local blocked = tonumber(redis.call('HGET', state, 'blocked_until') or '0')
if now < blocked then
  return {0, tostring(blocked - now)}
end
local limit = tonumber(redis.call('HGET', state, 'limit') or tostring(ceiling))
redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now)
if redis.call('ZCARD', inflight) >= math.max(1, math.floor(limit)) then
  return {0, '0.05'}
end
-- The share of the budgets in effect: cut by a 429, grown back by successes.
local scale = tonumber(redis.call('HGET', state, 'rate') or '1')
rpm, tpm = rpm * scale, tpm * scale
local last = tonumber(redis.call('HGET', state, 'ts') or tostring(now))
local elapsed = math.max(0, now - last)
-- After a 429 the request bucket stays empty until the wait is over; tokens refill as usual.
local hold = tonumber(redis.call('HGET', state, 'hold') or '0')
local wait = 0
local levels = {}
for i, spec in ipairs({{'req', rpm, 1}, {'tok', tpm, cost}}) do
  local name, budget, take = spec[1], spec[2], spec[3]
  if budget > 0 then
    -- One fixed size per budget, whatever a call costs. A request needs a whole one in the
    -- bucket; tokens need the bucket out of debt, and a call then takes all it may use,
    -- leaving it in debt: calls of every size wait alike, so small ones cannot starve a
    -- large one.
    local capacity = math.max(budget / 60, 1)
    local rate = math.max(budget - capacity, budget / 2) / 60
    local level = tonumber(redis.call('HGET', state, name) or tostring(capacity))
    local refill = elapsed
    if name == 'req' then refill = math.max(0, now - math.max(last, hold)) end
    level = math.min(capacity, level + refill * rate)
    levels[name] = level
    local needed = take
    if name == 'tok' then needed = 0 end
    if level < needed then
      wait = math.max(wait, (needed - level) / rate)
    end
  end
end
for name, level in pairs(levels) do
  redis.call('HSET', state, name, tostring(level))
end
redis.call('HSET', state, 'ts', tostring(now))
if wait > 0 then
  return {0, tostring(wait)}
end
if levels['req'] then redis.call('HSET', state, 'req', tostring(levels['req'] - 1)) end
if levels['tok'] then redis.call('HSET', state, 'tok', tostring(levels['tok'] - cost)) end
redis.call('ZADD', inflight, now + tonumber(ARGV[7]), ARGV[6])
redis.call('EXPIRE', state, 3600)
redis.call('EXPIRE', inflight, 3600)
return {1, '0'}
"""

# KEYS[1] state hash. ARGV: slot, ok (0/1), refund tokens, ceiling, tpm, the slot's tokens,
# the rate's growth per success.
_RELEASE = """
local state = KEYS[1]
redis.call('ZREM', KEYS[1] .. ':inflight', ARGV[1])
local ceiling = tonumber(ARGV[4])
if ARGV[2] == '1' then
  local limit = tonumber(redis.call('HGET', state, 'limit') or tostring(ceiling))
  redis.call('HSET', state, 'limit', tostring(math.min(ceiling, limit + 1 / limit)))
  local rate = tonumber(redis.call('HGET', state, 'rate') or '1')
  if rate < 1 then
    -- Quickly back to near where the last 429 came, then slowly past it.
    local growth = tonumber(ARGV[7])
    local cut_at = tonumber(redis.call('HGET', state, 'cut_at') or '2')
    if rate >= tonumber(ARGV[8]) * cut_at then growth = growth * tonumber(ARGV[9]) end
    redis.call('HSET', state, 'rate', tostring(math.min(1, rate + growth)))
  end
end
local refund, tpm = tonumber(ARGV[3]), tonumber(ARGV[5])
if refund > 0 and tpm > 0 then
  local level = tonumber(redis.call('HGET', state, 'tok') or '0')
  local capacity = math.max(tpm / 60, 1)  -- as _ACQUIRE sizes it
  redis.call('HSET', state, 'tok', tostring(math.min(capacity, level + refund)))
end
return 1
"""

# KEYS[1] state hash. ARGV: now, retry_after, cooldown, ceiling, rate cut, lowest rate.
# Returns 1 if it cut.
_PENALIZE = """
local state = KEYS[1]
local now, after = tonumber(ARGV[1]), tonumber(ARGV[2])
local blocked = tonumber(redis.call('HGET', state, 'blocked_until') or '0')
redis.call('HSET', state, 'blocked_until', tostring(math.max(blocked, now + after)))
local last_cut = tonumber(redis.call('HGET', state, 'last_cut') or '-1e18')
if now - last_cut < tonumber(ARGV[3]) then
  return 0
end
local limit = tonumber(redis.call('HGET', state, 'limit') or ARGV[4])
redis.call('HSET', state, 'limit', tostring(math.max(1, limit / 2)))
local rate = tonumber(redis.call('HGET', state, 'rate') or '1')
redis.call('HSET', state, 'cut_at', tostring(rate))
redis.call('HSET', state, 'rate', tostring(math.max(tonumber(ARGV[6]), rate * tonumber(ARGV[5]))))
redis.call('HSET', state, 'last_cut', tostring(now))
-- The request bucket starts empty when the wait ends: no burst into a window still full.
redis.call('HSET', state, 'req', '0')
redis.call('HSET', state, 'hold', tostring(math.max(blocked, now + after)))
return 1
"""

# KEYS[1] state hash. ARGV: field, remaining.
_SYNC = """
local level = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], tostring(math.min(level, tonumber(ARGV[2]))))
return 1
"""


@dataclass(frozen=True)
class Limits:
    """A provider's budgets; 0 means no budget of that kind."""

    rpm: int = 0
    tpm: int = 0
    max_concurrency: int = 16
    default_retry_after: float = 5.0
    cut_cooldown: float = 10.0
    slot_seconds: float = 600.0  # an in-flight slot's lease: past it, a dead worker's frees
    # Kept unused of each budget: a call admitted here reaches the provider a little later,
    # and those delays differ, so a window the provider counts can hold a few more calls, up
    # to the calls in flight. 2% was exactly the 24 calls three workers of 8 hold against
    # 1,200 RPM, and a window of the provider's once counted 1,201 (on a loaded machine).
    headroom: float = 0.03
    # The provider's real limit may be below the configured one (a shared key, a lower
    # tier): a 429 burst also cuts the budgets in effect to ``rate_cut`` of theirs. Each
    # success grows them back by 1 / (rate_recovery_minutes x requests per minute) until
    # ``near_cut`` of where the last cut came, and ``slow_growth`` as fast past it: back
    # quickly from a passing storm, and rarely into the provider's real limit again.
    rate_cut: float = 0.7
    lowest_rate: float = 0.02
    rate_recovery_minutes: float = 1.0
    near_cut: float = 0.9
    slow_growth: float = 0.1

    def budget(self, per_minute: int) -> float:
        return per_minute * (1 - self.headroom) if per_minute else 0

    @property
    def rate_growth(self) -> float:
        """What one success adds to the share of the budgets in effect."""
        calls_per_minute = self.rpm or 60  # tokens only: a call a second, as a guess
        return 1 / (self.rate_recovery_minutes * calls_per_minute)


@dataclass(frozen=True)
class Slot:
    id: str
    tokens: int


def limiter_key(provider: str, model: str, api_key: str) -> str:
    """The Redis key of one limiter: the API key by its hash, never in the clear."""
    digest = hashlib.sha256(api_key.encode()).hexdigest()[:16]
    return f"priorforge:limits:{provider}:{model}:{digest}"


@dataclass(frozen=True)
class LimiterState:
    """One limiter as Redis holds it now, for the dashboard and /metrics."""

    provider: str
    model: str
    key_digest: str  # the API key's, never the key
    limit: float | None  # the adaptive concurrency limit (None: never cut, at its ceiling)
    rate: float  # the share of the configured budgets in effect
    in_flight: int
    blocked_for: float  # seconds every worker still waits after a 429


def limiter_states(redis_url: str, now: float | None = None) -> list[LimiterState]:
    """Every limiter in Redis (they expire an hour after their last use)."""
    import redis

    now = time.time() if now is None else now
    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        keys = sorted(
            {  # SCAN may return a key twice
                key
                for key in client.scan_iter("priorforge:limits:*", count=500)
                if not key.endswith(b":inflight")
            }
        )
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
            pipe.zcount(key + b":inflight", now, "+inf")
        replies = pipe.execute()
    finally:
        client.close()
    states = []
    for key, raw, in_flight in zip(keys, replies[::2], replies[1::2], strict=True):
        # A model's name may hold colons ("llama3:8b"); a provider's and a digest's do not.
        provider, _, rest = key.decode().removeprefix("priorforge:limits:").partition(":")
        model, _, digest = rest.rpartition(":")
        values = {k.decode(): float(v) for k, v in raw.items()}
        states.append(
            LimiterState(
                provider=provider,
                model=model,
                key_digest=digest,
                limit=values.get("limit"),
                rate=values.get("rate", 1.0),
                in_flight=int(in_flight),
                blocked_for=max(0.0, values.get("blocked_until", 0.0) - now),
            )
        )
    return states


class SharedLimiter:
    def __init__(
        self,
        redis: Any,
        key: str,
        limits: Limits,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.redis, self.key, self.limits = redis, key, limits
        self.clock, self.sleep = clock, sleep
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)
        self._penalize = redis.register_script(_PENALIZE)
        self._sync = redis.register_script(_SYNC)

    async def try_acquire(self, tokens: int) -> tuple[Slot | None, float]:
        """A slot now, or (None, seconds to wait before asking again)."""
        slot = Slot(uuid.uuid4().hex, tokens)
        asked = asyncio.ensure_future(
            self._acquire(
                keys=[self.key],
                args=[
                    self.clock(),
                    self.limits.budget(self.limits.rpm),
                    self.limits.budget(self.limits.tpm),
                    tokens,
                    self.limits.max_concurrency,
                    slot.id,
                    self.limits.slot_seconds,
                ],
            )
        )
        try:
            admitted, wait = await asyncio.shield(asked)
        except asyncio.CancelledError:
            # Cancelled with the script sent: Redis may have given us the slot all the same.
            # Give it back now rather than leave it taken until its lease runs out.
            with contextlib.suppress(Exception):
                if int((await asked)[0]):
                    await asyncio.shield(self.release(slot, ok=False))
            raise
        return (slot, 0.0) if int(admitted) else (None, float(wait))

    async def acquire(self, tokens: int, max_wait: float | None = None) -> Slot:
        """Wait for a slot (the wait is a scheduled sleep, never a retry); raise
        :class:`WaitTooLong` when the limiter asks for more than ``max_wait`` seconds at once."""
        while True:
            slot, wait = await self.try_acquire(tokens)
            if slot is not None:
                return slot
            if max_wait is not None and wait > max_wait:
                raise WaitTooLong(wait)
            await self.sleep(wait)

    async def release(self, slot: Slot, *, ok: bool, used_tokens: int | None = None) -> None:
        refund = max(0, slot.tokens - used_tokens) if used_tokens is not None else 0
        await self._release(
            keys=[self.key],
            args=[
                slot.id,
                int(ok),
                refund,
                self.limits.max_concurrency,
                self.limits.budget(self.limits.tpm),
                slot.tokens,
                self.limits.rate_growth,
                self.limits.near_cut,
                self.limits.slow_growth,
            ],
        )

    async def rate_limited(self, retry_after: float | None) -> bool:
        """A 429: every worker waits it out; True when this one cut the concurrency."""
        after = self.limits.default_retry_after if retry_after is None else retry_after
        cut = await self._penalize(
            keys=[self.key],
            args=[
                self.clock(),
                after,
                self.limits.cut_cooldown,
                self.limits.max_concurrency,
                self.limits.rate_cut,
                self.limits.lowest_rate,
            ],
        )
        return bool(int(cut))

    async def observe_headers(self, headers: Mapping[str, str]) -> None:
        for header, field in (
            ("x-ratelimit-remaining-requests", "req"),
            ("x-ratelimit-remaining-tokens", "tok"),
        ):
            value = headers.get(header)
            if value is None:
                continue
            try:
                remaining = float(value)
            except ValueError:
                continue
            await self._sync(keys=[self.key], args=[field, remaining])

    async def state(self) -> dict[str, float]:
        """The limiter as Redis holds it (for /metrics, the dashboard and tests)."""
        raw = await self.redis.hgetall(self.key)
        inflight = await self.redis.zcard(f"{self.key}:inflight")
        values = {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in raw.items()}
        values.setdefault("limit", float(self.limits.max_concurrency))
        values.setdefault("rate", 1.0)
        values["inflight"] = float(inflight)
        return values


class WaitTooLong(Exception):
    """The limiter asks for a longer wait than a worker should spend holding its item."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the rate limiter asks to wait {seconds:.1f} s")
        self.seconds = seconds
