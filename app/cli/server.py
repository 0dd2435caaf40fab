"""``priorforge serve`` and ``priorforge worker``: the service's processes."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from app.cli.common import (
    check_providers,
    check_store_binding,
    ensure_schema,
    err,
    require_storage_url,
)
from app.core import logs
from app.core.settings import get_settings


def register(cli: typer.Typer) -> None:
    cli.command()(serve)
    cli.command()(worker)


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(help="Port to listen on; 0 picks a free one (the log names it).", min=0),
    ] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(
            help="API processes; default: one per CPU (up to 8) with a broker, 1 embedded.",
            min=1,
            max=64,
        ),
    ] = None,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log a line per request.")
    ] = True,
) -> None:
    """Run the HTTP API (OpenAPI docs at /docs); embedded mode also runs a worker."""
    import subprocess
    import sys

    import uvicorn

    from app.core.process import die_with_parent

    require_storage_url()
    ensure_schema()
    check_store_binding()
    check_providers()
    settings = get_settings()
    worker_process = None
    if settings.embedded_broker:
        err.print(
            "no PRIORFORGE_BROKER_URL: using the embedded broker in "
            f"{settings.broker_dir} and starting one worker process"
        )
        worker_process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"], preexec_fn=die_with_parent
        )
    try:
        processes = workers or (1 if settings.embedded_broker else min(os.cpu_count() or 1, 8))
        err.print(f"serving the API on http://{host}:{port} with {processes} process(es)")
        uvicorn.run(
            "app.main:app",
            host=host,
            port=port,
            workers=processes,
            # Each API process logs as the workers do (PRIORFORGE_LOG_FORMAT, _LOG_LEVEL).
            log_config=logs.dict_config(settings.log_level, settings.log_format),
            log_level=settings.log_level.lower(),
            access_log=access_log,
        )
    finally:
        if worker_process is not None:
            worker_process.terminate()
            try:
                worker_process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker_process.kill()


def worker(
    concurrency: Annotated[int, typer.Option(help="Task processes; 1 runs tasks in-process.")] = 1,
    loglevel: Annotated[
        str | None, typer.Option(help="Log level; default PRIORFORGE_LOG_LEVEL (INFO).")
    ] = None,
) -> None:
    """Run a Celery worker on PRIORFORGE_BROKER_URL (or the embedded broker)."""
    require_storage_url()
    settings = get_settings()
    if settings.embedded_broker:
        err.print(f"no PRIORFORGE_BROKER_URL: taking work from {settings.broker_dir}")
    ensure_schema()
    check_store_binding()
    check_providers()
    from workers.celery_app import celery_app

    pool = "solo" if concurrency == 1 else "prefork"
    celery_app.worker_main(
        [
            "worker",
            f"--loglevel={loglevel or settings.log_level}",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            f"--queues={get_settings().task_queue}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
