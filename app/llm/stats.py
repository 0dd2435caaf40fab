"""What this process's LLM calls did, per provider, counted as each HTTP attempt ends.

``ChatClient`` reports every attempt here (``attempt`` around its request). A worker's status
publisher (app/health/workers.py) sends ``snapshot()`` to Redis every few seconds, where the
dashboard and ``/metrics`` add up every live worker's: totals since the process started (for
Prometheus counters and histograms) and the last minute's requests, errors, 429s and
latency percentiles (for the dashboard).
"""

from __future__ import annotations

import asyncio
import bisect
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

# Upper bounds (seconds) of the latency histogram's buckets; the last one is +Inf.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
WINDOW_SECONDS = 60.0
MAX_RECENT = 200_000  # attempts kept for the last minute's figures (a few MB at most)
# A cancelled attempt (its job stopped, its worker shutting down) is no fault of the provider.
OUTCOMES = ("ok", "rate_limited", "error", "cancelled")


@dataclass
class _Provider:
    in_flight: int = 0
    attempts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    latency_sum: float = 0.0
    # Attempts per latency bucket (not cumulative), the last one over every bound.
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))


class CallStats:
    """Counters for one process; thread-safe (each chunk runs its own event loop thread)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._reset()

    def _reset(self) -> None:
        """No counts, and a lock of its own: a forked child counts its own calls (and a lock
        held by another thread of the parent at the fork would never be released)."""
        self._lock = threading.Lock()
        self._providers: dict[str, _Provider] = {}
        self._recent: deque[tuple[float, str, str, int]] = deque(maxlen=MAX_RECENT)

    @contextmanager
    def attempt(self, provider: str) -> Iterator[dict[str, str]]:
        """Count one HTTP attempt to ``provider``: in flight while the block runs, then by
        the outcome the block leaves in the yielded dict (``"error"`` if it raised)."""
        outcome = {"outcome": "error"}
        with self._lock:
            self._providers.setdefault(provider, _Provider()).in_flight += 1
        started = self._clock()
        try:
            yield outcome
        except asyncio.CancelledError:
            outcome["outcome"] = "cancelled"
            raise
        finally:
            self.ended(provider, outcome["outcome"], self._clock() - started)

    def ended(self, provider: str, outcome: str, seconds: float) -> None:
        bucket = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        with self._lock:
            counts = self._providers.setdefault(provider, _Provider())
            counts.in_flight -= 1
            counts.attempts[outcome] = counts.attempts.get(outcome, 0) + 1
            counts.latency_sum += seconds
            counts.latency_counts[bucket] += 1
            self._recent.append((self._clock(), provider, outcome, bucket))

    def snapshot(self) -> dict[str, Any]:
        """Per provider: totals since the process started, and the last minute's figures."""
        now = self._clock()
        with self._lock:
            while self._recent and self._recent[0][0] < now - WINDOW_SECONDS:
                self._recent.popleft()
            recent = list(self._recent)
            providers: dict[str, dict[str, Any]] = {
                name: {
                    "in_flight": counts.in_flight,
                    "attempts": dict(counts.attempts),
                    "latency_sum": counts.latency_sum,
                    "latency_counts": list(counts.latency_counts),
                    "minute": {
                        "attempts": dict.fromkeys(OUTCOMES, 0),
                        "latency_counts": [0] * (len(LATENCY_BUCKETS) + 1),
                    },
                }
                for name, counts in self._providers.items()
            }
        for _at, name, outcome, bucket in recent:
            minute: dict[str, Any] = providers[name]["minute"]
            minute["attempts"][outcome] = minute["attempts"].get(outcome, 0) + 1
            minute["latency_counts"][bucket] += 1
        return providers


def bucket_quantile(counts: list[int], q: float) -> float | None:
    """The upper bound of the latency bucket the ``q`` quantile falls in (None without any
    attempt; infinity past the last bound): percentiles from merged histograms."""
    total = sum(counts)
    if not total:
        return None
    running = 0
    for bound, count in zip((*LATENCY_BUCKETS, float("inf")), counts, strict=True):
        running += count
        if running >= q * total:
            return bound
    return float("inf")


STATS = CallStats()
os.register_at_fork(after_in_child=STATS._reset)
