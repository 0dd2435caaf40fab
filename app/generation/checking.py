"""Checking replies beside the event loop: cleaning, quality gates, decontamination and the
exact-dedup fingerprint (``pipeline.check``) in a process of their own.

A worker's event loop runs every call of a chunk; each reply's checks are about a
millisecond of pure Python (regular expressions, n-gram sets, numpy lookups). In the worker's
own process they hold the interpreter lock the calls, the writer and the leases need, and at a
few hundred replies a second they were a third of it. Here they run in ``check_processes``
spawned processes (1 by default; 0 checks in the worker's own process), replies batched while
the previous batch is being checked, so a busy worker sends a few batches a second.

A checking process builds the job's context itself, from the database, once per chunk (the
parent sends a token with each batch), so a job's decontamination index never crosses a pipe;
it is cached per process like the worker's. Nothing is written there: results come back to
the chunk, which records them. If the process cannot answer (it died, the database is away),
that batch is checked in the worker's own process instead, and a new process starts for the
next one. A checking process ends within a second of its worker, killed or not.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from app.core.db import session_scope
from app.core.settings import Settings
from app.generation.context import JobContext
from app.jobs import repository
from app.jobs.planner import PlannedItem

log = logging.getLogger(__name__)

# Replies per batch at most: a batch's results come back together.
BATCH = 128

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_size = 0


def pool(settings: Settings) -> ProcessPoolExecutor | None:
    """This process's checking processes (started on first use); None: check in-process."""
    global _pool, _pool_size
    if settings.check_processes == 0:
        return None
    with _lock:
        if _pool is None or _pool_size != settings.check_processes:
            if _pool is not None:
                _pool.shutdown(wait=False, cancel_futures=True)
            _pool = ProcessPoolExecutor(
                settings.check_processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_checker,
            )
            _pool_size = settings.check_processes
            for _ in range(_pool_size):  # start them now, while the first calls run
                _pool.submit(int)
        return _pool


def shutdown() -> None:
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
            _pool = None


def _discard(broken: ProcessPoolExecutor) -> None:
    global _pool
    with _lock:
        if _pool is broken:
            _pool = None
    broken.shutdown(wait=False, cancel_futures=True)


@dataclass
class Checks:
    """One chunk's replies, checked in batches by the checking processes (or here)."""

    context: JobContext
    settings: Settings
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    _waiting: list[tuple[PlannedItem, str, str | None, asyncio.Future[dict[str, Any]]]] = field(
        default_factory=list
    )
    _sender: asyncio.Task[None] | None = None

    async def check(self, item: PlannedItem, raw: str, finish_reason: str | None) -> dict[str, Any]:
        """``pipeline.check``'s values for one reply."""
        if self.settings.check_processes == 0:
            return _check_here(self.context, [(item, raw, finish_reason)])[0]
        result: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, raw, finish_reason, result))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send())
        return await result

    def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()

    async def _send(self) -> None:
        """Send what waits, a batch at a time, until nothing does."""
        loop = asyncio.get_running_loop()
        batch: list[tuple[PlannedItem, str, str | None, asyncio.Future[dict[str, Any]]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:BATCH], self._waiting[BATCH:]
                replies = [(item, raw, finish) for item, raw, finish, _result in batch]
                try:
                    results = await self._remote(loop, replies)
                except Exception as exc:  # a bug in check itself: the calls report it
                    for *_reply, result in batch:
                        if not result.done():
                            result.set_exception(exc)
                    continue
                for (*_reply, result), values in zip(batch, results, strict=True):
                    if not result.done():
                        result.set_result(values)
        finally:
            self._sender = None
            for *_reply, result in batch + self._waiting:  # ended early: nobody waits forever
                result.cancel()

    async def _remote(
        self,
        loop: asyncio.AbstractEventLoop,
        replies: list[tuple[PlannedItem, str, str | None]],
    ) -> list[dict[str, Any]]:
        processes = pool(self.settings)
        if processes is not None:
            rows = [(item.to_json(), raw, finish) for item, raw, finish in replies]
            try:
                return await loop.run_in_executor(
                    processes, check_batch, self.context.job_id, self.token, rows
                )
            except BrokenProcessPool:
                log.warning("a checking process died; checking here, and starting another")
                _discard(processes)
            except Exception:
                log.warning("the checking process failed; checking here", exc_info=True)
        return await asyncio.to_thread(_check_here, self.context, replies)


def _check_here(
    context: JobContext, replies: list[tuple[PlannedItem, str, str | None]]
) -> list[dict[str, Any]]:
    from app.generation.pipeline import check

    return [check(context, item, raw, finish) for item, raw, finish in replies]


# In a checking process: the contexts of the chunks it checks for, newest last.
_contexts: OrderedDict[tuple[uuid.UUID, str], JobContext] = OrderedDict()
_CONTEXTS = 8


def _start_checker() -> None:
    # A Ctrl-C in a terminal reaches the whole process group: the worker decides, not us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # End with the worker, however it ends. (Not PR_SET_PDEATHSIG: that fires when the
    # *thread* that started us ends, and an embedded run starts us from a thread of its own.)
    parent = os.getppid()

    def orphaned() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=orphaned, name="priorforge-checker-parent", daemon=True).start()
    # What the first batch needs, loaded now rather than while the first replies wait.
    import app.generation.pipeline  # noqa: F401


def check_batch(
    job_id: uuid.UUID, token: str, rows: list[tuple[dict[str, Any], str, str | None]]
) -> list[dict[str, Any]]:
    """In a checking process: ``pipeline.check`` for each (item, reply, finish reason)."""
    key = (job_id, token)
    context = _contexts.get(key)
    if context is None:
        with session_scope() as session:
            job = repository.get_job(session, job_id)
            if job is None:
                raise LookupError(f"job {job_id} is gone")
            context = JobContext.for_job(job, session, decontaminate=True)
        _contexts[key] = context
        while len(_contexts) > _CONTEXTS:
            _contexts.popitem(last=False)
    replies = [(PlannedItem.from_json(item), raw, finish) for item, raw, finish in rows]
    return _check_here(context, replies)
