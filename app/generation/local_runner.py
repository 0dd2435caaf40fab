"""Run a job inside this process, without a broker: the same service functions as a worker."""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass, field

from app.core.db import session_scope
from app.core.settings import Settings
from app.generation import batching
from app.generation.pipeline import close_thread_resources, run_chunk
from app.jobs import repository
from app.jobs import service as jobs
from app.jobs.dispatch import LocalDispatcher
from app.storage import ObjectStore


@dataclass
class LocalRun:
    job_id: uuid.UUID
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


def _status(job_id: uuid.UUID) -> str:
    with session_scope() as session:
        job = repository.get_job(session, job_id)
        return job.status if job else "missing"


def start(
    job_id: uuid.UUID, dispatcher: LocalDispatcher, *, settings: Settings, store: ObjectStore
) -> LocalRun:
    """Drain the dispatcher's chunks in a background thread; ``run.done`` is set at the end."""
    run = LocalRun(job_id=job_id)
    worker_id = f"local:{os.getpid()}"

    def drain() -> None:
        try:
            while not run.done.is_set():
                chunk = dispatcher.pop()
                if chunk is None:
                    if _status(job_id) not in repository.ACTIVE:
                        return
                    # Leases left by an interrupted earlier run come back once they expire.
                    with session_scope() as session:
                        jobs.reconcile_job(
                            session, job_id, dispatcher=dispatcher, settings=settings, store=store
                        )
                    batching.poll(job_id, dispatcher=dispatcher, settings=settings, store=store)
                    run.done.wait(0.5)
                    continue
                chunk_job, start, end = chunk
                run_chunk(
                    chunk_job,
                    start,
                    end,
                    worker_id=worker_id,
                    dispatcher=dispatcher,
                    settings=settings,
                    store=store,
                )
        except BaseException as exc:  # surfaced to the caller's thread
            run.error = exc
        finally:
            close_thread_resources()
            run.done.set()

    threading.Thread(target=drain, name="priorforge-local-runner", daemon=True).start()
    return run
