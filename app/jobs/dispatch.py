"""How chunks of work items reach a worker: Celery in service mode, a local queue in-process."""

from __future__ import annotations

import threading
import uuid
from collections import deque
from collections.abc import Iterable
from typing import Protocol

RUN_CHUNK_TASK = "jobs.run_chunk"
RECONCILE_TASK = "jobs.reconcile"


class Dispatcher(Protocol):
    def dispatch(self, job_id: uuid.UUID, start: int, end: int) -> None:
        """Ask a worker to run items ``start <= index < end`` of the job."""
        ...


def chunk_ranges(indices: Iterable[int], chunk_size: int) -> list[tuple[int, int]]:
    """Cover the given indices with half-open ranges of at most ``chunk_size`` items."""
    ranges: list[tuple[int, int]] = []
    start = end = None
    for index in sorted(set(indices)):
        if start is not None and end is not None and index == end and end - start < chunk_size:
            end += 1
            continue
        if start is not None and end is not None:
            ranges.append((start, end))
        start, end = index, index + 1
    if start is not None and end is not None:
        ranges.append((start, end))
    return ranges


class CeleryDispatcher:
    def dispatch(self, job_id: uuid.UUID, start: int, end: int) -> None:
        from workers.celery_app import celery_app

        celery_app.send_task(RUN_CHUNK_TASK, args=[str(job_id), start, end])


class LocalDispatcher:
    """A thread-safe FIFO of chunks for running a job inside one process (the CLI)."""

    def __init__(self) -> None:
        self._queue: deque[tuple[uuid.UUID, int, int]] = deque()
        self._lock = threading.Lock()

    def dispatch(self, job_id: uuid.UUID, start: int, end: int) -> None:
        with self._lock:
            self._queue.append((job_id, start, end))

    def pop(self) -> tuple[uuid.UUID, int, int] | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None
