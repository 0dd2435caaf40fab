"""Checking and recording replies beside the event loop, in processes of their own.

A worker's event loop runs every call of a chunk. Each reply's checks (``pipeline.check``:
cleaning, quality gates, decontamination, the exact-dedup fingerprint) are about a millisecond
of pure Python, and recording it (``pipeline.record_outcomes``: the document row, MinHash and
near-dedup, the counters) about as much again; in the worker's own process they held the
interpreter lock the calls need, and at a few hundred replies a second they were half of it.
Here replies are checked in ``check_processes`` spawned processes (1 by default), batched
while the previous batch is being checked, and results are recorded by one more process, so
a busy worker sends a few batches a second each way. ``0`` does both in the worker's own
process (the checks inline, the recording in a thread).

These processes build the job's context themselves, from the database, once per chunk (the
parent sends a token with each batch, and asks for the context as the chunk starts), so a
job's decontamination index never crosses a pipe; it is cached per process like the
worker's. If a process cannot answer (it died, the database is away), that batch is checked
or recorded in the worker's own process instead, and a new process starts for the next one:
recording is idempotent, so a batch recorded there but not reported is recorded here at no
cost. These processes end within a second of their worker, killed or not.
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
from typing import TYPE_CHECKING, Any

from app.core import logs
from app.core.db import session_scope
from app.core.settings import Settings
from app.generation.context import JobContext
from app.jobs import repository
from app.jobs.planner import PlannedItem

if TYPE_CHECKING:
    from app.generation.pipeline import ChunkReport, Outcome

log = logging.getLogger(__name__)

# Replies per batch at most: a batch's results come back together.
BATCH = 128

_lock = threading.Lock()
# This process's pools by role: "check" (``check_processes`` processes) and "write" (one).
_pools: dict[str, tuple[ProcessPoolExecutor, int]] = {}


def _started(role: str, size: int) -> ProcessPoolExecutor | None:
    if size == 0:
        return None
    with _lock:
        current = _pools.get(role)
        if current is None or current[1] != size:
            if current is not None:
                current[0].shutdown(wait=False, cancel_futures=True)
            executor = ProcessPoolExecutor(
                size,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_checker,
                initargs=(os.getpid(), logs.configured()),
            )
            for _ in range(size):  # start them now, while the first calls run
                executor.submit(int)
            current = _pools[role] = (executor, size)
        return current[0]


def pool(settings: Settings) -> ProcessPoolExecutor | None:
    """This process's checking processes (started on first use); None: check in-process."""
    return _started("check", settings.check_processes)


def writer(settings: Settings) -> ProcessPoolExecutor | None:
    """This process's writing process, beside the checking ones; None (no checking
    processes): outcomes are recorded in the worker's own threads."""
    return _started("write", 1 if settings.check_processes else 0)


def start(settings: Settings) -> None:
    """Start the processes a worker's chunks use, so that none waits for them."""
    pool(settings)
    writer(settings)


def shutdown() -> None:
    with _lock:
        for executor, _size in _pools.values():
            executor.shutdown(wait=True, cancel_futures=True)
        _pools.clear()


def _discard(broken: ProcessPoolExecutor) -> None:
    with _lock:
        for role, (executor, _size) in list(_pools.items()):
            if executor is broken:
                del _pools[role]
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

    def prepare(self) -> None:
        """Have the processes build the chunk's job context now, while its first calls run,
        not when its first replies arrive."""
        for processes, decontaminate in (
            (pool(self.settings), True),
            (writer(self.settings), False),
        ):
            if processes is not None:
                try:
                    processes.submit(prepare, self.context.job_id, self.token, decontaminate)
                except RuntimeError:  # a broken pool: the first batch finds out, and says so
                    pass

    def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()

    async def record(self, outcomes: list[Outcome], report: ChunkReport) -> None:
        """``pipeline.record_outcomes`` for a batch: in the writing process, where its
        statements, MinHash signatures and dedup lookups do not take the interpreter lock
        from the calls; here (in a thread) if that process cannot answer. Recording is
        idempotent (a document already written is skipped), so a batch the writing process
        wrote and then could not report is written again here at no cost."""
        from app.generation.pipeline import record_outcomes

        processes = writer(self.settings)
        if processes is not None:
            rows = [(o.item.to_json(), o.values, o.exhausted) for o in outcomes]
            try:
                written, counts = await asyncio.get_running_loop().run_in_executor(
                    processes,
                    record_batch,
                    self.context.job_id,
                    self.token,
                    rows,
                    self.settings.canary_guid,
                )
            except BrokenProcessPool:
                log.warning("the writing process died; writing here, and starting another")
                _discard(processes)
            except Exception:
                log.warning("the writing process failed; writing here", exc_info=True)
            else:
                report.written += written
                for status, count in counts.items():
                    report.outcomes[status] = report.outcomes.get(status, 0) + count
                return
        canary = self.settings.canary_guid
        await asyncio.to_thread(record_outcomes, self.context, outcomes, report, canary)

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
    from app.generation.pipeline import check_all

    return check_all(context, replies)


# In a checking process: the contexts of the chunks it checks for, newest last.
_contexts: OrderedDict[tuple[uuid.UUID, str], JobContext] = OrderedDict()
_CONTEXTS = 8


def _start_checker(parent: int, logging_setup: tuple[str | int, str] | None = None) -> None:
    """In a new checking or writing process, started by process ``parent`` (logging as it
    does)."""
    if logging_setup is not None:
        logs.configure(*logging_setup)
    # A Ctrl-C in a terminal reaches the whole process group: the worker decides, not us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # End with the worker, however it ends. (Not PR_SET_PDEATHSIG: that fires when the
    # *thread* that started us ends, and an embedded run starts us from a thread of its own.)
    # The parent's pid comes from the parent: one that died while we were starting is gone
    # already, and our parent now is whoever adopted us.
    if os.getppid() != parent:
        os._exit(0)

    def orphaned() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=orphaned, name="priorforge-checker-parent", daemon=True).start()
    # What the first batch needs, loaded now rather than while the first replies wait.
    import app.generation.pipeline  # noqa: F401


def _context(job_id: uuid.UUID, token: str, *, decontaminate: bool) -> JobContext:
    """The chunk's job context in this process, built once per chunk (its token)."""
    key = (job_id, token)
    context = _contexts.get(key)
    if context is None:
        with session_scope() as session:
            job = repository.get_job(session, job_id)
            if job is None:
                raise LookupError(f"job {job_id} is gone")
            context = JobContext.for_job(job, session, decontaminate=decontaminate)
        _contexts[key] = context
        while len(_contexts) > _CONTEXTS:
            _contexts.popitem(last=False)
    return context


def prepare(job_id: uuid.UUID, token: str, decontaminate: bool) -> None:
    """In a checking or writing process: build a chunk's context ahead of its first batch."""
    try:
        with logs.job_context(job_id):
            _context(job_id, token, decontaminate=decontaminate)
    except Exception:  # the first batch builds it again, and reports what fails
        log.debug("preparing job %s failed", job_id, exc_info=True)


def check_batch(
    job_id: uuid.UUID, token: str, rows: list[tuple[dict[str, Any], str, str | None]]
) -> list[dict[str, Any]]:
    """In a checking process: ``pipeline.check_all`` for (item, reply, finish reason) rows."""
    with logs.job_context(job_id):
        context = _context(job_id, token, decontaminate=True)
        replies = [(PlannedItem.from_json(item), raw, finish) for item, raw, finish in rows]
        return _check_here(context, replies)


def record_batch(
    job_id: uuid.UUID,
    token: str,
    rows: list[tuple[dict[str, Any], dict[str, Any] | None, int]],
    canary_guid: str,
) -> tuple[int, dict[str, int]]:
    """In the writing process: ``pipeline.record_outcomes`` for (item, values, exhausted)
    rows; how many were written, and their statuses."""
    from app.generation.pipeline import ChunkReport, Outcome, record_outcomes

    with logs.job_context(job_id):
        context = _context(job_id, token, decontaminate=False)
        outcomes = [
            Outcome(PlannedItem.from_json(item), values, lost) for item, values, lost in rows
        ]
        report = ChunkReport(job_id=job_id)
        record_outcomes(context, outcomes, report, canary_guid)
        return report.written, report.outcomes
