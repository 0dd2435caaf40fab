"""Each team's API request rate: a quota per minute with a burst, shared by every API process.

GCRA (the generic cell rate algorithm): a team's key holds the theoretical arrival time of its
next request. Each admitted request moves it on by ``60 / per_minute`` seconds; a request
is refused while that time is more than ``burst`` intervals ahead of now, and learns how
long to wait. One key per team, one round trip per request: with a Redis broker, one Lua
script on Redis's own clock (API processes on several machines see one quota); embedded,
the same arithmetic in this process.

Blocking calls (the guard runs them in its thread pool, with the key check): a thread-safe
client tied to no event loop, so nothing is left open when a loop ends. A Redis that cannot
be reached admits the request, and is not asked again for a few seconds: the quota protects
the service, and an outage of the broker must not also take every read down (writes then
answer 503 anyway).
"""

from __future__ import annotations

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

    def admit(self, team_id: uuid.UUID) -> float:
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

    def admit(self, team_id: uuid.UUID) -> float:
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
    """The quota in Redis, shared by every API process."""

    def __init__(self, per_minute: int, burst: int, redis_url: str) -> None:
        import redis

        super().__init__(per_minute, burst)
        self._client = redis.Redis.from_url(
            redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        self._script: Any = self._client.register_script(_GCRA)
        self._warned_at = float("-inf")
        self._down_until = float("-inf")

    def admit(self, team_id: uuid.UUID) -> float:
        from redis.exceptions import RedisError

        if time.monotonic() < self._down_until:
            return 0.0  # Redis failed moments ago: do not make every request wait for it
        try:
            wait = self._script(
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

    def close(self) -> None:
        self._client.close()


@functools.lru_cache(maxsize=8)
def request_rate(per_minute: int, burst: int, broker_url: str | None) -> RequestRate | None:
    """The quota for these settings (one per process): None when it is off."""
    if per_minute <= 0:
        return None
    if broker_url and broker_url.startswith(("redis://", "rediss://")):
        return SharedRequestRate(per_minute, burst, broker_url)
    return LocalRequestRate(per_minute, burst)
