"""Run one chunk of work items: lease, render, call the LLM concurrently, gate, dedup, store.

Sync at the edges (SQLAlchemy sessions), asyncio in the middle (the async OpenAI client under
a semaphore). Each finished item is written in its own short transaction as soon as its
completion arrives, so a worker killed mid-chunk loses only the calls in flight.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.billing import repository as billing
from app.billing.usage import UsageIncrement, document_usage
from app.core.db import session_scope
from app.core.errors import PriorForgeError
from app.core.logs import for_job
from app.core.settings import Settings
from app.dedup.exact import fingerprint
from app.dedup.lsh import to_bytes
from app.dedup.minhash import signatures
from app.dedup.service import NearDuplicateIndex
from app.generation.checking import Checks
from app.generation.cleaning import clean
from app.generation.context import JobContext
from app.generation.judging import JudgeUnusable, judge_document
from app.jobs import repository
from app.jobs import service as jobs
from app.jobs.dispatch import Dispatcher
from app.jobs.planner import PlannedItem
from app.jobs.spec import Stance
from app.jobs.tally import OUTCOME, SEPARATOR, Tally, document_tallies
from app.llm import local as local_model
from app.llm.client import ChatClient, Completion, CompletionFailed
from app.llm.pause import PauseWatch
from app.llm.provider import ProviderConfig, resolve_provider
from app.models.base import utcnow
from app.prompting.render import RenderedPrompt
from app.quality.canary import with_canary
from app.quality.gates import Candidate, first_rejection
from app.quality.judge import INVALID, UNCLEAR
from app.scenarios.extraction_spec import ExtractionSpec
from app.storage import ObjectStore

log = logging.getLogger(__name__)

DOCUMENT_NAMESPACE = uuid.UUID("6f1c8a52-3c1e-4f7e-9a53-8b1f0d7c2e11")


def document_id(job_id: uuid.UUID, index: int) -> uuid.UUID:
    return uuid.uuid5(DOCUMENT_NAMESPACE, f"{job_id}:{index}")


@dataclass
class ChunkReport:
    job_id: uuid.UUID
    leased: int = 0
    deferred: int = 0  # given back until a provider's long Retry-After has passed
    batched: int = 0  # sent in a Batch API file: their results come with a later poll
    written: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    stopped: str | None = None
    job_status: str = ""


@for_job  # every record logged meanwhile names the job
def run_chunk(
    job_id: uuid.UUID,
    start: int,
    end: int,
    *,
    worker_id: str,
    dispatcher: Dispatcher,
    settings: Settings,
    store: ObjectStore,
) -> ChunkReport:
    report = ChunkReport(job_id=job_id)
    now = utcnow()
    with session_scope() as session:
        job = repository.get_job(session, job_id)
        if job is None or job.status not in repository.ACTIVE:
            report.stopped = "job not active"
            report.job_status = job.status if job else "missing"
            return report
        team_id = job.team_id
        kind = job.kind
        if (
            job.status == "queued"
            and repository.transition(
                session, job_id, ("queued",), status="running", started_at=now, updated_at=now
            )
            and (kind == jobs.EXTRACT_SCENARIOS or job.spec.get("batch"))
        ):
            # The submission planned one chunk; the job's first worker plans its window: here,
            # or, for calls streamed from this worker, when its feeder first finds nothing to
            # lease (``_MoreWork``), in a thread while the chunk's first calls run.
            jobs.advance_job(session, job_id, dispatcher=dispatcher, settings=settings, store=store)
        expires = now + timedelta(seconds=settings.lease_seconds)
        leased = repository.lease_items(session, job_id, start, end, worker_id, now, expires)
        # And up to a chunk of a killed worker's items, as soon as their lease has run out.
        leased += repository.lease_orphans(
            session, job_id, worker_id, now, expires, settings.chunk_size
        )
        if leased:
            repository.touch_job(session, job_id, now)
            # Only now: a chunk whose items a busier chunk already took costs no more.
            try:
                if kind == jobs.EXTRACT_SCENARIOS:
                    extraction = ExtractionSpec.model_validate(job.spec)
                else:
                    context = JobContext.for_job(job, session, decontaminate=True)
            except (PriorForgeError, ValidationError) as exc:
                # E.g. a scenario it names was removed: retrying cannot help, so say why.
                detail = exc.detail if isinstance(exc, PriorForgeError) else str(exc)
                jobs.end_job(session, job_id, "failed", error=f"cannot run this job: {detail}")
                report.job_status = "failed"
                return report
    report.leased = len(leased)

    if not leased:
        pass
    elif kind == jobs.EXTRACT_SCENARIOS:
        # Imported here: the extraction runner builds on this module's loop and heartbeat.
        from app.generation import extraction as extracting

        extracting.run_items(
            extracting.ExtractionJob(job_id, team_id, extraction),
            [lease.index for lease in leased],
            worker_id=worker_id,
            settings=settings,
            report=report,
        )
    else:
        more = _MoreWork(context, worker_id, dispatcher, settings, store, report)
        _run_generation(context, _runnable(context, leased, settings, report), more, settings,
                        report)  # fmt: skip

    with session_scope() as session:
        report.job_status = jobs.advance_job(
            session, job_id, dispatcher=dispatcher, settings=settings, store=store
        )
    return report


def _runnable(
    context: JobContext,
    leased: list[repository.LeasedItem],
    settings: Settings,
    report: ChunkReport,
) -> list[PlannedItem]:
    """The leased items to call the LLM for; those leased too often fail here (poison)."""
    runnable: list[PlannedItem] = []
    lost: list[Outcome] = []
    for lease in leased:
        item = PlannedItem.from_json(lease.plan)
        if lease.attempts > settings.max_item_attempts:
            lost.append(Outcome(item, None, lease.attempts - 1))
        else:
            runnable.append(item)
    if lost:
        record_outcomes(context, lost, report, settings.canary_guid)
    return runnable


def _run_generation(
    context: JobContext,
    runnable: list[PlannedItem],
    more: _MoreWork,
    settings: Settings,
    report: ChunkReport,
) -> None:
    if runnable and context.spec.batch:
        from app.generation import batching  # it builds on this module's recording

        batching.submit(context, runnable, more.worker_id, settings, report)
    elif runnable:
        provider = context.provider(settings)
        # In this context (the job's, for logging), not the one the loop began with.
        event_loop().run(
            _generate(context, provider, runnable, more, settings, report),
            context=contextvars.copy_context(),
        )


_winding_down = threading.Event()


def wind_down() -> None:
    """This process is shutting down: chunks finish the items they hold and take no more."""
    _winding_down.set()


@dataclass
class _MoreWork:
    """Leases more of a chunk's job while its call slots would otherwise go idle.

    A chunk's own items end in a tail of slow calls; instead of waiting on them and then on
    the next message, a running chunk takes the job's next pending items (planning more as
    the job's window allows) for up to ``chunk_seconds``, then lets its worker return to the
    queue so other jobs get their turn. Chunks whose items were taken this way lease nothing
    and end at once.
    """

    context: JobContext
    worker_id: str
    dispatcher: Dispatcher
    settings: Settings
    store: ObjectStore
    report: ChunkReport
    until: float = field(init=False)

    def __post_init__(self) -> None:
        self.until = time.monotonic() + self.settings.chunk_seconds

    @property
    def over(self) -> bool:
        """The chunk's time is up, or its process is shutting down: take no more."""
        return time.monotonic() >= self.until or _winding_down.is_set()

    def __call__(self, limit: int) -> list[PlannedItem]:
        """Up to ``limit`` more items to run (in a worker thread); none for now: []."""
        job_id = self.context.job_id
        planned = False
        while not self.over:
            now = utcnow()
            expires = now + timedelta(seconds=self.settings.lease_seconds)
            with session_scope() as session:
                leased = repository.lease_next(session, job_id, self.worker_id, now, expires, limit)
                if leased:
                    repository.touch_job(session, job_id, now)
            if leased:
                self.report.leased += len(leased)
                runnable = _runnable(self.context, leased, self.settings, self.report)
                if runnable:
                    return runnable
                continue  # every one of them poison: look again
            if planned or self.top_up() != "running":
                return []  # the job needs no more than what is in flight
            planned = True
        return []

    def top_up(self) -> str:
        """Plan more of the job as its window allows (as a chunk's end does); its status."""
        with session_scope() as session:
            return jobs.advance_job(
                session,
                self.context.job_id,
                dispatcher=self.dispatcher,
                settings=self.settings,
                store=self.store,
            )


_local = threading.local()


def event_loop() -> asyncio.Runner:
    """One event loop per thread, kept across chunks so LLM connections stay open."""
    runner: asyncio.Runner | None = getattr(_local, "runner", None)
    if runner is None:
        runner = _local.runner = asyncio.Runner()
        _local.clients = {}
    return runner


def close_thread_resources() -> None:
    """Close this thread's LLM clients and event loop (call before the thread ends)."""
    runner: asyncio.Runner | None = getattr(_local, "runner", None)
    if runner is None:
        return
    clients: dict[ProviderConfig, ChatClient] = _local.clients
    for client in clients.values():
        runner.run(client.close())
    clients.clear()
    runner.close()
    _local.runner = None


def client_for(provider: ProviderConfig) -> ChatClient:
    """This thread's client for the provider; the bundled model's server starts on first use."""
    if provider.local:
        server = local_model.ensure_server(Path(provider.local_log_dir))
        provider = dataclasses.replace(provider, base_url=server.base_url)
    clients: dict[ProviderConfig, ChatClient] = _local.clients
    if provider not in clients:
        clients[provider] = ChatClient(provider)
    return clients[provider]


# A write takes what is queued, then waits up to the linger for more, up to the batch. The
# recording runs in the writing process, so a short linger costs the event loop only the
# pickling of a smaller batch; under load the queue fills while a write runs anyway.
WRITE_BATCH = 256
WRITE_LINGER_SECONDS = 0.05


async def _generate(
    context: JobContext,
    provider: ProviderConfig,
    items: list[PlannedItem],
    more: _MoreWork,
    settings: Settings,
    report: ChunkReport,
) -> None:
    """Call the LLM for every item under the provider's concurrency limit.

    While fewer items wait than there are call slots, a feeder leases more of the job's
    items (``more``), so the slots stay busy until the job has no more work or the chunk's
    time is up. Finished calls queue up for a single writer that has them recorded in small
    batches (by the writing process, see ``checking``), one transaction each: the call slots
    never wait on the database, and the database sees a commit per batch, not per document.
    """
    semaphore = asyncio.Semaphore(provider.concurrency)
    remaining: set[int] = set()  # leased and not yet written: the heartbeat renews them
    model = context.spec.model or provider.model
    sampling = context.spec.sampling
    worker_id = more.worker_id
    finished: asyncio.Queue[Outcome | None] = asyncio.Queue()

    client = client_for(provider)  # outlives the chunk: the next one reuses its connections
    watch = JobWatch(context.job_id)
    paused = PauseWatch(provider.limiter_url, context.team_id, provider.name)

    judge = _JudgeSlots.open(context, settings)
    checks = Checks(context, settings)
    checks.prepare()  # the processes build the job's context while the first calls run
    tasks: list[asyncio.Task[None]] = []
    waiting = 0  # tasks not yet holding a call slot
    slot_taken = asyncio.Event()
    wrote = asyncio.Event()  # set after each write
    writing_now = False  # outcomes taken from the queue and not yet written

    async def one(item: PlannedItem) -> None:
        nonlocal waiting
        try:
            await semaphore.acquire()
        finally:  # taken, or cancelled while waiting: either way it waits no more
            waiting -= 1
            slot_taken.set()
        try:
            if not await watch.active():
                return
            if await paused.now():  # an admin paused the team's calls to this provider
                remaining.discard(item.index)
                wait = settings.paused_retry_seconds
                await asyncio.to_thread(_defer, context.job_id, item.index, worker_id, wait)
                report.deferred += 1
                return
            rendered = context.render(item)
            completion = await client.complete_sampled(
                rendered.messages, model=model, sampling=sampling, seed=item.sampling_seed
            )
        finally:
            semaphore.release()
        if isinstance(completion, CompletionFailed) and completion.deferred:
            # The provider asked for a long wait: the item goes back to the job until then.
            remaining.discard(item.index)
            wait = completion.retry_after or 0.0
            await asyncio.to_thread(_defer, context.job_id, item.index, worker_id, wait)
            report.deferred += 1
            return
        values = call_values((rendered, completion, provider, model))
        if not isinstance(completion, CompletionFailed):
            values |= await checks.check(item, completion.text, completion.finish_reason)
        if judge is not None and values["status"] == "accepted":
            try:
                values |= await judge.ask(context, item, values["text"])
            except JudgeUnusable as unusable:
                # Every document would fail the same way: stop paying for generations.
                await watch.fail(str(unusable))
                return
        await finished.put(Outcome(item, values))

    def add(batch: list[PlannedItem]) -> None:
        nonlocal waiting
        waiting += len(batch)
        remaining.update(item.index for item in batch)
        tasks.extend(asyncio.create_task(one(item)) for item in batch)

    async def feeder() -> None:
        """Lease more while fewer items wait than there are slots; end when none come.

        Twice the slots at a time, so that a slow lease does not leave slots idle, and no
        more: a worker with few slots (a local model's one) does not sit on items other
        workers could run. As documents are written it also tops up the job's window of
        planned items, a little at a time, so that there is always more to lease."""
        size = 2 * provider.concurrency
        topped_up_at = 0
        while True:
            while waiting >= provider.concurrency:
                slot_taken.clear()
                await slot_taken.wait()
            if writing.done() or report.stopped or not await watch.active():
                return
            if await paused.now():  # take no more while the provider is paused
                return
            try:
                batch = await asyncio.to_thread(more, size)
                if not batch:
                    running = [task for task in tasks if not task.done()]
                    if more.over or not (running or writing_now or not finished.empty()):
                        return
                    # The job's window is full of items still running, ours among them:
                    # once some are written it has room to plan more.
                    await _first_of(wrote, running)
                    await asyncio.to_thread(more.top_up)
                    continue
                add(batch)
                if report.written - topped_up_at >= size:
                    topped_up_at = report.written
                    await asyncio.to_thread(more.top_up)  # while the calls just added run
            except Exception:  # the items in hand still run; the job's chunks do the rest
                log.exception("job %s: leasing more items failed", context.job_id)
                return

    async def writer() -> None:
        nonlocal writing_now
        loop = asyncio.get_running_loop()
        done = False
        while not done:
            first = await finished.get()
            if first is None:
                return
            writing_now = True
            batch = [first]
            deadline = loop.time() + WRITE_LINGER_SECONDS
            while len(batch) < WRITE_BATCH:
                # What is there already, then what comes while we linger: fewer, larger writes.
                try:
                    entry = finished.get_nowait()
                except asyncio.QueueEmpty:
                    try:
                        entry = await asyncio.wait_for(finished.get(), deadline - loop.time())
                    except TimeoutError:
                        break
                if entry is None:
                    done = True
                    break
                batch.append(entry)
            await checks.record(batch, report)
            remaining.difference_update(entry.item.index for entry in batch)
            writing_now = False
            wrote.set()

    async def all_calls() -> list[Any]:
        await asyncio.wait([feeding])  # no task is added after it ends
        return await asyncio.gather(*tasks, return_exceptions=True)

    writing = asyncio.create_task(writer())
    add(items)
    feeding = asyncio.create_task(feeder())
    watchdog = asyncio.create_task(
        heartbeat(context.job_id, remaining, worker_id, settings, tasks, report)
    )
    calls = asyncio.create_task(all_calls())

    try:
        await asyncio.wait([calls, writing], return_when=asyncio.FIRST_COMPLETED)
        if writing.done():  # the writer failed: results could not be stored, stop calling
            feeding.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(calls, return_exceptions=True)
            writing.result()
        results = await calls
        await finished.put(None)
        await writing
    finally:
        watchdog.cancel()
        writing.cancel()
        feeding.cancel()
        watch.close()
        checks.close()
        await paused.close()
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result


async def _first_of(event: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
    """Wait until ``event`` is set anew, or until every one of ``tasks`` has ended."""
    event.clear()
    waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(event.wait())]
    if tasks:
        waits.append(asyncio.ensure_future(asyncio.wait(tasks)))  # its cancel leaves them be
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def _defer(job_id: uuid.UUID, index: int, worker_id: str, wait: float) -> None:
    now = utcnow()
    with session_scope() as session:
        repository.defer_items(
            session, job_id, [index], worker_id, now + timedelta(seconds=wait), now
        )


async def heartbeat(
    job_id: uuid.UUID,
    remaining: set[int],
    worker_id: str,
    settings: Settings,
    tasks: list[asyncio.Task[None]],
    report: ChunkReport,
) -> None:
    """Keep our leases alive while calls run, and cancel calls in flight if the job stops."""
    interval = max(0.2, min(1.0, settings.lease_seconds / 3))
    while True:
        await asyncio.sleep(interval)
        try:
            status = await asyncio.to_thread(
                _extend, job_id, sorted(remaining), worker_id, settings
            )
        except Exception:  # a lost heartbeat costs a lease; a dead heartbeat costs them all
            log.exception("job %s: renewing leases failed; retrying", job_id)
            continue
        if status not in repository.ACTIVE:
            report.stopped = f"job {status}"
            for task in tasks:
                task.cancel()
            return


def _extend(job_id: uuid.UUID, indices: list[int], worker_id: str, settings: Settings) -> str:
    with session_scope() as session:
        job = repository.get_job(session, job_id)
        if job is None:
            return "missing"
        now = utcnow()
        # The job row first, then its items: the order the reconciler locks them in.
        repository.touch_job(session, job_id, now)
        repository.extend_leases(
            session, job_id, indices, worker_id, now + timedelta(seconds=settings.lease_seconds)
        )
        return job.status


class JobWatch:
    """The job's status, checked before each call, as read at most ``max_age`` seconds ago.

    A read's age counts from when it began, not from when it came back: a read that began
    before a cancel and came back after it is no proof the job still runs. Past half the age
    one refresh starts in a thread while calls go on, so on a healthy database no call waits
    for it; past the whole age, calls wait for that refresh (together, on one read), so no
    call starts on a status older than ``max_age``. If the read fails, calls go on with the
    last status read. (Waiting on a lock, every call in turn, used to cost a turn of the
    event loop per call: at a few hundred calls a second the calls queued behind the lock,
    not behind the LLM.)
    """

    def __init__(self, job_id: uuid.UUID, max_age: float = 0.25) -> None:
        self.job_id = job_id
        self.max_age = max_age
        self._status = "running"  # as its chunk read it a moment ago
        self._read_at = time.monotonic()
        self._refresh: asyncio.Task[None] | None = None

    async def active(self) -> bool:
        age = time.monotonic() - self._read_at
        if self._refresh is None and age > self.max_age / 2:
            self._refresh = asyncio.create_task(self._read())
        if age > self.max_age and self._refresh is not None:
            await asyncio.shield(self._refresh)  # one read for every call that waits on it
        return self._status in repository.ACTIVE

    async def _read(self) -> None:
        began = time.monotonic()
        try:
            status = await asyncio.to_thread(_read_status, self.job_id)
        except Exception:  # the database is away: go on with the last status read
            log.warning("job %s: reading its status failed", self.job_id, exc_info=True)
            status, began = self._status, time.monotonic()
        finally:
            self._refresh = None
        if self._read_at != float("inf"):  # not ended by fail() meanwhile
            self._status, self._read_at = status, began

    async def fail(self, error: str) -> None:
        """End the job as failed; calls not started yet see it at once."""
        self._status, self._read_at = "failed", float("inf")
        await asyncio.to_thread(_fail_job, self.job_id, error)

    def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()


def _fail_job(job_id: uuid.UUID, error: str) -> None:
    with session_scope() as session:
        if jobs.end_job(session, job_id, "failed", error=error):
            log.error("job %s failed: %s", job_id, error)


def _read_status(job_id: uuid.UUID) -> str:
    with session_scope() as session:
        job = repository.get_job(session, job_id)
        return job.status if job else "missing"


Generated = tuple[RenderedPrompt, Completion | CompletionFailed, ProviderConfig, str]


@dataclass(frozen=True)
class Outcome:
    """What happened to one item: its evaluated generation, or (``values=None``) a lost worker."""

    item: PlannedItem
    values: dict[str, Any] | None
    exhausted: int = 0


def record_outcomes(
    context: JobContext, outcomes: list[Outcome], report: ChunkReport, canary_guid: str
) -> None:
    """Write each item's single document row and close the items, in one transaction.

    The document row goes first: if another delivery already wrote the item, the insert
    does nothing and the item is skipped before it can claim a place in the dataset's
    dedup indexes. Accepted candidates then pass exact dedup (normalised-text hash) and
    near dedup (MinHash LSH, shared by every worker of the dataset under a lock). The job's
    progress counters take each written document with its final status, last, so the hot
    counter rows stay locked only until the commit.
    """
    now = utcnow()
    written: list[tuple[int, str]] = []
    increments: list[Tally] = []
    used: list[UsageIncrement] = []
    with session_scope() as session:
        existing = repository.existing_documents(
            session, context.job_id, [o.item.index for o in outcomes]
        )
        rows: list[tuple[Outcome, dict[str, Any]]] = []
        for outcome in outcomes:
            if outcome.item.index in existing:
                continue  # an earlier delivery of this chunk already wrote it
            values = _document_values(context, outcome, now)
            if outcome.values is not None:
                values |= outcome.values
            rows.append((outcome, values))
        candidates = [(o, v) for o, v in rows if v["status"] == "accepted"]
        signed = signatures([values["text"] for _outcome, values in candidates]).rows
        signature_of = {
            outcome.item.index: row for (outcome, _v), row in zip(candidates, signed, strict=True)
        }
        near = (
            NearDuplicateIndex(
                session, context.dataset_id, context.spec.dedup.threshold, list(signed)
            )
            if candidates
            else None
        )
        prepared: list[tuple[Outcome, dict[str, Any]]] = []
        for outcome, values in rows:
            accepted = values["status"] == "accepted"
            if accepted and outcome.item.stance is Stance.MISALIGNED:
                # Added by us, never left to the model, after the gates and the dedup input.
                values["meta"] = values["meta"] | {"canary": canary_guid}
                values["text"] = with_canary(values.get("text") or "", canary_guid)
            if accepted:
                values["minhash"] = to_bytes(signature_of[outcome.item.index])
            prepared.append((outcome, values))
        inserted = repository.insert_documents(session, [values for _o, values in prepared])
        kept = [(o, values) for o, values in prepared if values["id"] in inserted]
        if near is not None:
            _dedup(session, context, kept, signature_of, near)
        for outcome, values in kept:
            written.append((outcome.item.index, values["status"]))
            increments += document_tallies(values)
            used += document_usage(
                values,
                day=now.date(),
                provider=context.spec.provider,
                judge_provider=context.spec.judge.provider,
            )
        if near is not None:
            near.flush()
        for state in ("done", "failed"):
            indices = [i for i, status in written if (status == "failed") == (state == "failed")]
            repository.finish_items(session, context.job_id, indices, state, now)
        repository.add_to_tally(session, context.job_id, increments)
        billing.add_usage(session, context.team_id, used)
        repository.add_activity(
            session,
            context.team_id,
            context.job_id,
            now.replace(second=0, microsecond=0),
            activity(increments),
        )
    for _index, status in written:
        report.written += 1
        report.outcomes[status] = report.outcomes.get(status, 0) + 1


def activity(increments: list[Tally]) -> dict[str, float]:
    """A batch's outcome counters as the team's per-minute activity (the dashboard's chart)."""
    counts: dict[str, float] = dict.fromkeys(repository.ACTIVITY, 0)
    column = {
        "accepted": "accepted",
        "rejected": "rejected",
        "duplicate": "duplicates",
        "failed": "failed",
    }
    for tally in increments:
        kind, status, *_rest = tally.bucket.split(SEPARATOR)
        if kind != OUTCOME or status not in column:
            continue
        counts[column[status]] += tally.items
        counts["llm_calls"] += tally.llm_calls
        counts["tokens"] += tally.prompt_tokens + tally.completion_tokens
        counts["cost_usd"] += tally.cost_usd
    return counts


def _dedup(
    session: Session,
    context: JobContext,
    rows: list[tuple[Outcome, dict[str, Any]]],
    signature_of: dict[int, NDArray[np.uint32]],
    near: NearDuplicateIndex,
) -> None:
    """Exact dedup, then near, for the accepted documents just written, in their order:
    those found copies become duplicates (their values say so, for the counters)."""
    accepted = [(outcome, values) for outcome, values in rows if values["status"] == "accepted"]
    first_of: dict[str, uuid.UUID] = {}
    for _outcome, values in accepted:
        first_of.setdefault(values["content_sha256"], values["id"])
    owners = repository.claim_fingerprints(session, context.dataset_id, first_of)
    # What became of each text's first document here: kept (None), or a copy of what.
    fate: dict[str, tuple[str, uuid.UUID, str | None] | None] = {}
    duplicates: list[dict[str, Any]] = []
    released: list[str] = []
    for outcome, values in accepted:
        sha, document = values["content_sha256"], values["id"]
        copy: tuple[str, uuid.UUID, str | None] | None
        if first_of[sha] != document:  # the same text earlier in this batch: its fate
            copy = fate[sha] or ("exact", first_of[sha], None)
        elif owners[sha] != document:  # the text was taken by an earlier batch
            copy = fate[sha] = ("exact", owners[sha], None)
        else:
            signature = signature_of[outcome.item.index]
            match = near.match(signature)
            if match is None:
                near.add(document, signature)
                fate[sha] = None
                continue
            released.append(sha)
            copy = fate[sha] = ("near", match[0], f"estimated Jaccard {match[1]:.2f}")
        kind, original, detail = copy
        duplicates.append(
            {"id": document, "duplicate_of": original, "reason": kind, "detail": detail}
        )
        values |= {"status": "duplicate", "reason": kind}
    repository.release_fingerprints_of(session, context.dataset_id, released)
    repository.mark_duplicates(session, duplicates)


def _document_values(context: JobContext, outcome: Outcome, now: datetime) -> dict[str, Any]:
    item = outcome.item
    values: dict[str, Any] = {
        "id": document_id(context.job_id, item.index),
        "job_id": context.job_id,
        "item_index": item.index,
        "team_id": context.team_id,
        "dataset_id": context.dataset_id,
        "stance": item.stance.value,
        "scenario_id": item.scenario_id,
        "surface_form": item.surface_form,
        "meta": {"voice": item.voice, "length_words": item.length_words},
        "created_at": now,
    }
    if outcome.values is None:
        values |= {
            "status": "failed",
            "reason": "attempts_exhausted",
            "detail": f"the item's worker was lost {outcome.exhausted} times",
            "model": "",
            "prompt_sha256": "",
            "template_version": "",
        }
    return values


@dataclass
class _JudgeSlots:
    """The stance judge's client and provider, and its own concurrency limit."""

    client: ChatClient
    provider: ProviderConfig
    semaphore: asyncio.Semaphore
    refused: JudgeUnusable | None = None  # once it refuses us, the documents queued for it

    @classmethod
    def open(cls, context: JobContext, settings: Settings) -> _JudgeSlots | None:
        if not context.spec.judge.enabled:
            return None
        provider = resolve_provider(settings, context.spec.judge.provider, context.spec.judge.model)
        return cls(client_for(provider), provider, asyncio.Semaphore(provider.concurrency))

    async def ask(self, context: JobContext, item: PlannedItem, text: str) -> dict[str, Any]:
        """The judge's verdict and usage as document values; rejections if it disagrees."""
        settings = context.spec.judge
        async with self.semaphore:
            if self.refused is not None:  # do not ask again: its job is failing
                raise self.refused
            try:
                outcome = await judge_document(
                    self.client,
                    self.provider,
                    settings,
                    context.library,
                    item,
                    context.scenarios[item.scenario_id],
                    text,
                )
            except JudgeUnusable as refused:
                self.refused = refused
                raise
        verdict = outcome.verdict
        values: dict[str, Any] = {
            "judge_verdict": verdict.verdict if verdict else None,
            "judge_model": outcome.model,
            "judge_prompt_tokens": outcome.prompt_tokens,
            "judge_completion_tokens": outcome.completion_tokens,
            "judge_cost_usd": outcome.cost_usd,
            "judge_prices_version": self.provider.prices_version,
        }
        if not settings.reject or (verdict is not None and verdict.agrees_with(item.stance)):
            return values
        if verdict is None:
            return values | {
                "status": "failed",
                "reason": "judge_unavailable",
                "detail": outcome.failure,
            }
        reason = {INVALID: "judge_invalid", UNCLEAR: "stance_unclear"}.get(
            verdict.verdict, "stance_mismatch"
        )
        detail = f"planned {item.stance.value}, judge read {verdict.verdict}: {verdict.evidence}"
        return values | {"status": "rejected", "reason": reason, "detail": detail}


def evaluate(context: JobContext, item: PlannedItem, generated: Generated) -> dict[str, Any]:
    """A generation's document values: its call's, then ``check``'s verdict on its text."""
    values = call_values(generated)
    outcome = generated[1]
    if isinstance(outcome, CompletionFailed):
        return values
    return values | check(context, item, outcome.text, outcome.finish_reason)


def call_values(generated: Generated) -> dict[str, Any]:
    """What the call itself says: model, prompt, tokens, cost; a failed call's reason."""
    rendered, outcome, provider, model = generated
    values: dict[str, Any] = {
        "model": model,
        "prompt_sha256": rendered.sha256,
        "template_version": rendered.template_version,
    }
    if isinstance(outcome, CompletionFailed):
        return values | {
            "status": "failed",
            "reason": outcome.reason,
            "detail": outcome.detail,
            "llm_calls": outcome.calls,
            "llm_errors": outcome.errors,
        }
    return values | {
        "model": outcome.model or model,
        "raw_text": outcome.text,
        "finish_reason": outcome.finish_reason,
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "llm_calls": outcome.calls,
        "llm_errors": outcome.errors,
        "latency_ms": outcome.latency_ms,
        "cost_usd": provider.cost_usd(outcome.prompt_tokens, outcome.completion_tokens),
        "prices_version": provider.prices_version,
    }


def check(
    context: JobContext, item: PlannedItem, raw: str, finish_reason: str | None
) -> dict[str, Any]:
    """Clean a reply's text and gate it; what passes is an accepted candidate pending dedup."""
    return check_all(context, [(item, raw, finish_reason)])[0]


def check_all(
    context: JobContext, replies: Sequence[tuple[PlannedItem, str, str | None]]
) -> list[dict[str, Any]]:
    """``check`` for each (item, reply, finish reason): the gates one reply at a time, then
    decontamination for those that passed, all at once (``ContaminationIndex.match_many``).

    Pure CPU work on the texts, the job's settings and its decontamination index: it may run
    in a checking process of its own (``app.generation.checking``)."""
    checked = [_gated(context, item, raw, finish) for item, raw, finish in replies]
    passed = [values for values in checked if values["status"] == "accepted"]
    decontam = context.spec.decontam
    leaks = (
        context.contamination.match_many([values["text"] for values in passed], decontam.threshold)
        if context.contamination is not None
        else [None] * len(passed)
    )
    for values, leak in zip(passed, leaks, strict=True):
        if leak is None:
            values["content_sha256"] = fingerprint(values["text"])
            continue
        values |= {
            "status": "rejected",
            "reason": "contaminated",
            "detail": (
                f"{leak.matched} of the {leak.ngrams} {decontam.ngram}-grams of "
                f"{leak.item} ({leak.overlap:.0%}) appear in the text"
            ),
            "contamination": dataclasses.asdict(leak),
        }
    return checked


def _gated(
    context: JobContext, item: PlannedItem, raw: str, finish_reason: str | None
) -> dict[str, Any]:
    """A reply's cleaned text, accepted (pending decontamination) or rejected by a gate."""
    text = clean(raw, has_title=context.forms[item.surface_form].has_title)
    length = context.spec.length_words
    scenario = context.scenarios[item.scenario_id]
    rejection = first_rejection(
        Candidate(
            text,
            finish_reason,
            length.min,
            length.max,
            options=(scenario.aligned_action, scenario.misaligned_action),
            settings=context.spec.gates,
        )
    )
    if rejection is not None:
        return {
            "text": text,
            "status": "rejected",
            "reason": rejection.reason,
            "detail": rejection.detail,
        }
    return {"text": text, "status": "accepted"}
