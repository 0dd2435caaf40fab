"""Which workers are online and what each is doing, through Redis.

Every worker process publishes its status every ``PUBLISH_SECONDS`` under its own key, which
expires after ``TTL_SECONDS``: a worker that died or lost Redis drops out of the list by
itself, and no broadcast to the workers (Celery's ``inspect``, a second or more) stands
between a page and its answer. The status says which chunks the process runs now (job, since
when), how long its finished tasks took (a histogram), and its LLM calls by provider
(app/llm/stats.py). The dashboard's workers and providers pages and ``/metrics`` add up the
statuses of every live worker.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis

from app.llm.stats import LATENCY_BUCKETS, OUTCOMES, STATS, CallStats
from app.models.base import utcnow

PREFIX = "priorforge:worker"
PUBLISH_SECONDS = 5.0
TTL_SECONDS = 20
# Upper bounds (seconds) of the task duration histogram's buckets; the last one is +Inf.
TASK_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)

log = logging.getLogger(__name__)


@dataclass
class _Tasks:
    running: dict[str, dict[str, Any]] = field(default_factory=dict)
    finished: dict[str, list[int]] = field(default_factory=dict)  # by task: bucket counts
    seconds: dict[str, float] = field(default_factory=dict)


class WorkerStatus:
    """One process's status, and the thread that publishes it."""

    def __init__(self, calls: CallStats = STATS) -> None:
        self.calls = calls
        self._reset()

    def _reset(self) -> None:
        """This process's own status: a forked child (a prefork pool's) starts afresh, with
        locks no thread of the parent holds and no publishing thread yet."""
        self.id = f"{socket.gethostname()}:{os.getpid()}"
        self.started_at = utcnow().isoformat()
        self._lock = threading.Lock()
        self._tasks = _Tasks()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def task(self, name: str, job_id: str | None = None) -> Iterator[None]:
        """Count a task (a chunk of ``job_id``) as running while the block runs."""
        key = uuid.uuid4().hex
        started = time.monotonic()
        with self._lock:
            self._tasks.running[key] = {
                "task": name,
                "job_id": job_id,
                "since": utcnow().isoformat(),
            }
        try:
            yield
        finally:
            seconds = time.monotonic() - started
            with self._lock:
                del self._tasks.running[key]
                counts = self._tasks.finished.setdefault(name, [0] * (len(TASK_BUCKETS) + 1))
                counts[bisect.bisect_left(TASK_BUCKETS, seconds)] += 1
                self._tasks.seconds[name] = self._tasks.seconds.get(name, 0.0) + seconds

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            tasks = {
                "running": list(self._tasks.running.values()),
                "finished": {name: list(counts) for name, counts in self._tasks.finished.items()},
                "seconds": dict(self._tasks.seconds),
            }
        return {
            "id": self.id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self.started_at,
            "at": utcnow().isoformat(),
            "tasks": tasks,
            "llm": self.calls.snapshot(),
        }

    def publish(self, client: redis.Redis) -> None:
        client.set(f"{PREFIX}:{self.id}", json.dumps(self.snapshot()), ex=TTL_SECONDS)

    def start(self, redis_url: str) -> None:
        """Publish every few seconds from a daemon thread, until ``stop``."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, args=(redis_url,), name="priorforge-status", daemon=True
        )
        self._thread.start()

    def stop(self, redis_url: str | None = None) -> None:
        """Stop publishing; with ``redis_url``, take the status down at once (after a publish
        under way, which would put it back)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if redis_url:
            client = redis.Redis.from_url(redis_url, socket_timeout=2)
            try:
                client.delete(f"{PREFIX}:{self.id}")
            except redis.RedisError:
                pass  # it expires on its own
            finally:
                client.close()

    def _run(self, redis_url: str) -> None:
        client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        try:
            while not self._stop.is_set():
                try:
                    self.publish(client)
                except redis.RedisError:  # Redis is away: the status expires, then returns
                    log.warning("could not publish this worker's status", exc_info=True)
                self._stop.wait(PUBLISH_SECONDS)
        finally:
            client.close()


WORKER = WorkerStatus()
os.register_at_fork(after_in_child=WORKER._reset)


@dataclass(frozen=True)
class ProviderHealth:
    """A provider's calls over the last minute, from every live worker."""

    name: str
    in_flight: int
    attempts: int
    errors: int
    rate_limited: int
    latency_counts: list[int]

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.attempts if self.attempts else None

    @property
    def rate_limited_rate(self) -> float | None:
        return self.rate_limited / self.attempts if self.attempts else None


def read(redis_url: str) -> list[dict[str, Any]]:
    """Every live worker's status, by id."""
    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        keys = sorted(set(client.scan_iter(f"{PREFIX}:*", count=500)))  # SCAN may repeat one
        values = client.mget(keys) if keys else []
    finally:
        client.close()
    statuses = []
    for value in values:
        if value is None:  # expired between the scan and the read
            continue
        try:
            status = json.loads(value)
        except ValueError:
            log.warning("a worker status that is not JSON: %r", value[:200])
            continue
        if _readable(status):
            statuses.append(status)
        else:
            log.warning("a worker status this version cannot read: %r", value[:200])
    return statuses


def _readable(status: dict[str, Any]) -> bool:
    """Whether a status has the shape this version publishes (a worker of another version
    mid-deploy is left out, not a page's 500)."""
    try:
        for figures in status.get("llm", {}).values():
            if len(figures["minute"]["latency_counts"]) != len(LATENCY_BUCKETS) + 1:
                return False
            int(figures["in_flight"])
            dict(figures["minute"]["attempts"])
        return isinstance(status["tasks"]["running"], list)
    except (KeyError, TypeError, ValueError, AttributeError):
        return False


def providers(statuses: list[dict[str, Any]]) -> list[ProviderHealth]:
    """The last minute's calls per provider, summed over the workers."""
    merged: dict[str, dict[str, Any]] = {}
    for status in statuses:
        if not _readable(status):
            continue
        for name, figures in status.get("llm", {}).items():
            total = merged.setdefault(
                name,
                {
                    "in_flight": 0,
                    "attempts": dict.fromkeys(OUTCOMES, 0),
                    "latency": [0] * (len(LATENCY_BUCKETS) + 1),
                },
            )
            total["in_flight"] += figures["in_flight"]
            for outcome, count in figures["minute"]["attempts"].items():
                total["attempts"][outcome] = total["attempts"].get(outcome, 0) + count
            for index, count in enumerate(figures["minute"]["latency_counts"]):
                total["latency"][index] += count
    return [
        ProviderHealth(
            name=name,
            in_flight=total["in_flight"],
            attempts=sum(total["attempts"].values()),
            errors=total["attempts"].get("error", 0),
            rate_limited=total["attempts"].get("rate_limited", 0),
            latency_counts=total["latency"],
        )
        for name, total in sorted(merged.items())
    ]
