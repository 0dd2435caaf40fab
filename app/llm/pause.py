"""Pausing a provider for a team: the team's admin stops its calls to that provider at once,
until resumed, without cancelling anything.

The state is one Redis key per (team, provider) on the broker, which every worker reads: a
chunk looks at it at most once a second (``PauseWatch`` caches it), so a pause costs a call no
round trip. While paused, a chunk takes no more items, and an item about to be called goes
back to its job for ``paused_retry_seconds`` (as a long Retry-After does) without a call; once
resumed, the next lease runs it. Without a Redis broker (embedded mode) nothing is paused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

import redis
from redis import asyncio as aioredis

from app.models.base import utcnow

log = logging.getLogger(__name__)

PREFIX = "priorforge:paused"


def key(team_id: uuid.UUID, provider: str) -> str:
    return f"{PREFIX}:{team_id}:{provider}"


def paused(redis_url: str, team_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    """The team's paused providers: {provider: {"at": ISO time, "by": key prefix}}."""
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        found = {}
        for name in client.scan_iter(f"{PREFIX}:{team_id}:*", count=100):
            value = client.get(name)
            if value is not None:
                provider = name.decode().rsplit(":", 1)[1]
                found[provider] = json.loads(value)
        return found
    finally:
        client.close()


def pause(redis_url: str, team_id: uuid.UUID, provider: str, by: str) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        client.set(key(team_id, provider), json.dumps({"at": utcnow().isoformat(), "by": by}))
    finally:
        client.close()


def resume(redis_url: str, team_id: uuid.UUID, provider: str) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        client.delete(key(team_id, provider))
    finally:
        client.close()


class PauseWatch:
    """Whether a team's calls to a provider are paused, read at most every ``max_age``
    seconds. If Redis cannot be read, calls go on (a pause is an admin's brake, not a
    safety interlock) and the failure is logged once."""

    def __init__(
        self, redis_url: str, team_id: uuid.UUID, provider: str, max_age: float = 1.0
    ) -> None:
        self._client = aioredis.from_url(redis_url, socket_timeout=2) if redis_url else None
        self._key = key(team_id, provider)
        self._max_age = max_age
        self._read_at = float("-inf")
        self._paused = False
        self._warned = False
        self._reading: asyncio.Future[None] | None = None

    async def now(self) -> bool:
        if self._client is None:
            return False
        if time.monotonic() - self._read_at >= self._max_age:
            # One read at a time; the calls that come meanwhile wait for it, not for a stale
            # answer (the first calls of a chunk would otherwise all go out unpaused).
            if self._reading is None:
                self._reading = asyncio.ensure_future(self._read())
            reading = self._reading
            await asyncio.shield(reading)
        return self._paused

    async def _read(self) -> None:
        assert self._client is not None
        try:
            self._paused = bool(await self._client.exists(self._key))
        except redis.RedisError:
            if not self._warned:
                log.warning("cannot read provider pauses; calls go on", exc_info=True)
                self._warned = True
            self._paused = False
        finally:
            self._read_at = time.monotonic()
            self._reading = None

    async def close(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
        if self._client is not None:
            await self._client.aclose()
