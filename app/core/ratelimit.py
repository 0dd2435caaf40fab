"""Each team's API request rate: a quota per minute with a burst, shared by every API process.

GCRA (the generic cell rate algorithm): a team's key holds the theoretical arrival time of its
next request. Each admitted request moves it on by ``60 / per_minute`` seconds; a request
is refused while that time is more than ``burst`` intervals ahead of now, and learns how
long to wait. One key per team, one round trip per request: with a Redis broker, one Lua
script on Redis's own clock (API processes on several machines see one quota); embedded,
the same arithmetic in this process.

A Redis that cannot be reached admits the request: the quota protects the service, and an
outage of the broker must not also take every read down (writes then answer 503 anyway).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

# KEYS[1] the team's key. ARGV: interval, tolerance (seconds). Returns the wait, "0" if admitted.
_GCRA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now - tolerance
if wait > 0 then return tostring(wait) end
local after = tat + interval
redis.call('SET', KEYS[1], tostring(after), 'PX', math.ceil((after - now) * 1000) + 1000)
return '0'
"""

KEY_PREFIX = "priorforge:api-rate:"
# After Redis fails, requests skip the quota this long before it is asked again.
RETRY_REDIS_SECONDS = 5.0


class RequestRate:
    """``per_minute`` requests a minute per team, ``burst`` of them at once."""

    def __init__(self, per_minute: int, burst: int) -> None:
        self.per_minute = per_minute
        self.interval = 60.0 / per_minute
        self.tolerance = self.interval * (max(1, burst) - 1)

    async def admit(self, team_id: uuid.UUID) -> float:
        """0 if the request may go on, else the seconds until one would be admitted."""
        raise NotImplementedError


class LocalRequestRate(RequestRate):
    """One process's quota (embedded mode: the only API process)."""

    def __init__(
        self, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(per_minute, burst)
        self.clock = clock
        self._arrivals: dict[uuid.UUID, float] = {}
        self._lock = threading.Lock()

    async def admit(self, team_id: uuid.UUID) -> float:
        return self.admit_now(team_id)

    def admit_now(self, team_id: uuid.UUID) -> float:
        with self._lock:
            now = self.clock()
            arrival = max(self._arrivals.get(team_id, now), now)
            wait = arrival - now - self.tolerance
            if wait > 0:
                return wait
            self._arrivals[team_id] = arrival + self.interval
            if len(self._arrivals) > 100_000:  # drop teams whose arrival time has passed
                self._arrivals = {k: v for k, v in self._arrivals.items() if v > now}
            return 0.0


class SharedRequestRate(RequestRate):
    """The quota in Redis, shared by every API process; one client per event loop."""

    def __init__(self, per_minute: int, burst: int, redis_url: str) -> None:
        super().__init__(per_minute, burst)
        self.redis_url = redis_url
        self._scripts: dict[asyncio.AbstractEventLoop, Any] = {}
        self._warned_at = float("-inf")
        self._down_until = float("-inf")

    def _script(self) -> Any:
        loop = asyncio.get_running_loop()
        script = self._scripts.get(loop)
        if script is None:
            import redis.asyncio as redis

            client = redis.Redis.from_url(
                self.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
            )
            script = self._scripts[loop] = client.register_script(_GCRA)
        return script

    async def close(self) -> None:
        """Close this event loop's client (the app's shutdown)."""
        script = self._scripts.pop(asyncio.get_running_loop(), None)
        if script is not None:
            await script.registered_client.aclose()

    async def admit(self, team_id: uuid.UUID) -> float:
        from redis.exceptions import RedisError

        if time.monotonic() < self._down_until:
            return 0.0  # Redis failed moments ago: do not make every request wait for it
        try:
            wait = await self._script()(
                keys=[f"{KEY_PREFIX}{team_id}"], args=[self.interval, self.tolerance]
            )
        except (RedisError, OSError) as exc:
            now = time.monotonic()
            self._down_until = now + RETRY_REDIS_SECONDS
            if now - self._warned_at > 60:
                self._warned_at = now
                log.warning("API request quota not enforced: Redis unreachable (%s)", exc)
            return 0.0
        return float(wait)


async def close_all() -> None:
    """Close the clients the quotas opened on this event loop."""
    for quota in list(_made):
        if isinstance(quota, SharedRequestRate):
            await quota.close()


_made: list[RequestRate] = []


@functools.lru_cache(maxsize=8)
def request_rate(per_minute: int, burst: int, broker_url: str | None) -> RequestRate | None:
    """The quota for these settings (one per process): None when it is off."""
    if per_minute <= 0:
        return None
    quota: RequestRate
    if broker_url and broker_url.startswith(("redis://", "rediss://")):
        quota = SharedRequestRate(per_minute, burst, broker_url)
    else:
        quota = LocalRequestRate(per_minute, burst)
    _made.append(quota)
    return quota
