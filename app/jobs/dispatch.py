"""How chunks of work items reach a worker: Celery in service mode, a local queue in-process."""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol

log = logging.getLogger(__name__)

RUN_CHUNK_TASK = "jobs.run_chunk"
RECONCILE_TASK = "jobs.reconcile"


class Dispatcher(Protocol):
    def dispatch(self, job_id: uuid.UUID, start: int, end: int) -> None:
        """Ask a worker to run items ``start <= index < end`` of the job."""
        ...

    def backlog(self) -> int | None:
        """Messages waiting in the queue, or None if that cannot be told."""
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

    def backlog(self) -> int | None:
        from amqp.exceptions import ChannelError

        from workers.celery_app import celery_app

        queue = celery_app.conf.task_default_queue
        try:
            with celery_app.connection_for_read() as connection:
                channel: Any = connection.default_channel
                return int(channel.queue_declare(queue=queue, passive=True).message_count)
        except ChannelError as exc:
            if str(getattr(exc, "reply_code", "")) == "404":
                return 0  # nobody declared the queue yet, so nothing waits in it
            log.warning("could not read the length of queue %s: %s", queue, exc)
            return None
        except Exception:  # unknown is an answer: the caller then assumes messages were lost
            log.warning("could not read the length of queue %s", queue, exc_info=True)
            return None


class LocalDispatcher:
    """A thread-safe FIFO of chunks for running a job inside one process (the CLI)."""

    def __init__(self) -> None:
        self._queue: deque[tuple[uuid.UUID, int, int]] = deque()
        self._lock = threading.Lock()

    def dispatch(self, job_id: uuid.UUID, start: int, end: int) -> None:
        with self._lock:
            self._queue.append((job_id, start, end))

    def backlog(self) -> int | None:
        with self._lock:
            return len(self._queue)

    def pop(self) -> tuple[uuid.UUID, int, int] | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None
