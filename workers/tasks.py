"""Thin Celery tasks: take ids, call a service, let Celery deal with delivery."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import uuid
from typing import Any

from celery.concurrency.solo import TaskPool as SoloPool
from celery.signals import (
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

from app.core.db import get_engine, session_scope
from app.core.settings import get_settings
from app.datasets.exports import service as exports
from app.datasets.exports.service import RUN_EXPORT_TASK
from app.evals import service as evals
from app.evals.service import RUN_EVAL_TASK
from app.generation import batching, checking
from app.generation.pipeline import close_thread_resources, wind_down
from app.generation.pipeline import run_chunk as run_chunk_service
from app.health.workers import WORKER
from app.jobs import service as jobs
from app.jobs.dispatch import RECONCILE_TASK, RUN_CHUNK_TASK, CeleryDispatcher
from app.llm.provider import redis_url
from app.storage.default import get_store
from workers.celery_app import celery_app

log = logging.getLogger(__name__)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


@celery_app.task(name=RUN_CHUNK_TASK)
def run_chunk(job_id: str, start: int, end: int) -> dict[str, Any]:
    with WORKER.task(RUN_CHUNK_TASK, job_id):
        report = run_chunk_service(
            uuid.UUID(job_id),
            start,
            end,
            worker_id=f"{WORKER_ID}:{uuid.uuid4().hex[:8]}",
            dispatcher=CeleryDispatcher(),
            settings=get_settings(),
            store=get_store(),
        )
    return {"leased": report.leased, "written": report.written, "status": report.job_status}


@celery_app.task(name=RUN_EXPORT_TASK)
def run_export(export_id: str) -> str:
    with WORKER.task(RUN_EXPORT_TASK):
        return exports.run_export(
            uuid.UUID(export_id),
            store=get_store(),
            settings=get_settings(),
            sessions=session_scope,
        )


@celery_app.task(name=RUN_EVAL_TASK)
def run_eval(eval_id: str) -> str:
    with WORKER.task(RUN_EVAL_TASK):
        return evals.run_eval(uuid.UUID(eval_id), settings=get_settings(), sessions=session_scope)


@celery_app.task(name=RECONCILE_TASK)
def reconcile() -> int:
    return reconcile_all()


def reconcile_all() -> int:
    settings = get_settings()
    with session_scope() as session:
        job_ids = jobs.active_job_ids(session)
    for job_id in job_ids:
        try:
            with session_scope() as session:
                jobs.reconcile_job(
                    session,
                    job_id,
                    dispatcher=CeleryDispatcher(),
                    settings=settings,
                    store=get_store(),
                )
            batching.poll(
                job_id, dispatcher=CeleryDispatcher(), settings=settings, store=get_store()
            )
        except Exception:  # one bad job must not stop the others being reconciled
            log.exception("reconciling job %s failed", job_id)
    try:
        batching.cancel_ended(settings)
    except Exception:
        log.exception("cancelling the batches of ended jobs failed")
    _resend_stale(settings)
    return len(job_ids)


def _resend_stale(settings: Any) -> None:
    """An export or evaluation whose message was lost is sent again, once the queue is empty
    (a message still waiting would run it anyway)."""
    with session_scope() as session:
        stale_exports = exports.stale_exports(session, settings)
        stale_evals = evals.stale_evals(session, settings)
    if (stale_exports or stale_evals) and CeleryDispatcher().backlog() == 0:
        for export_id in stale_exports:
            log.warning("export %s has no worker: sending it again", export_id)
            exports.celery_dispatch(export_id)
        for eval_id in stale_evals:
            log.warning("evaluation %s has no worker: sending it again", eval_id)
            evals.celery_dispatch(eval_id)


_stop = threading.Event()


def _reconcile_forever() -> None:
    interval = get_settings().reconcile_interval_seconds
    while not _stop.is_set():
        try:
            reconcile_all()
        except Exception:
            log.exception("reconciler pass failed")
        _stop.wait(interval)


@worker_ready.connect  # after Celery has set up logging (solo pool: the tasks run here)
@worker_process_init.connect  # each pool child
def _quiet_http_client(**_: Any) -> None:
    # The openai client's HTTP library logs every request at INFO: a line per LLM call
    # drowns what matters. (It is httpx2 in current openai releases, httpx in older ones.)
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)


# The interpreter lock changes hands every 5 ms by default. A chunk's event loop shares it
# with the threads that write results and lease items: at that interval each reply waited
# on a write for longer than the writing took. 1 ms: at 200 ms per call and 64 in flight,
# calls took 239-251 ms as the worker saw them at 5 ms, 230 ms at 1 ms (bench/pipeline.py).
SWITCH_INTERVAL_SECONDS = 0.001


@worker_init.connect  # the main process (the solo pool runs tasks there)
@worker_process_init.connect  # each prefork child
def _share_the_interpreter_finely(**_: Any) -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)


@worker_ready.connect
def _start_checking(sender: Any = None, **_: Any) -> None:
    # Where tasks run in this process (the solo pool), its checking processes start now,
    # not when the first replies of the first job are waiting for them.
    if isinstance(getattr(sender, "pool", None), SoloPool):
        checking.start(get_settings())


@worker_process_init.connect
def _start_checking_in_child(**_: Any) -> None:
    checking.start(get_settings())


@worker_ready.connect
def _start_publishing_status(sender: Any = None, **_: Any) -> None:
    # The dashboard's workers page and /metrics read what each process that runs tasks
    # publishes: this one with the solo pool; a prefork pool's children, not their parent.
    if isinstance(getattr(sender, "pool", None), SoloPool):
        _publish_status()


@worker_process_init.connect
def _start_publishing_status_in_child(**_: Any) -> None:
    _publish_status()


def _publish_status() -> None:
    url = redis_url(get_settings())
    if url:
        WORKER.start(url)


@worker_ready.connect
def _start_reconciler(**_: Any) -> None:
    # Every worker runs one; per-job claims in the database keep them from doubling up.
    threading.Thread(target=_reconcile_forever, name="priorforge-reconciler", daemon=True).start()


@worker_shutting_down.connect  # the warm shutdown's signal handler, in the main process
def _take_no_more_items(**_: Any) -> None:
    wind_down()


@worker_shutdown.connect
def _stop_reconciler(**_: Any) -> None:
    _stop.set()
    WORKER.stop(redis_url(get_settings()) or None)
    close_thread_resources()
    checking.shutdown()


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    # A forked pool child must not share the parent's database connections.
    get_engine().dispose(close=False)
