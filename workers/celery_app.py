"""The Celery application. Tasks are idempotent, so they are acknowledged late."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import setup_logging

from app.core import logs
from app.core.settings import get_settings


@setup_logging.connect  # connected, it replaces Celery's own logging setup
def _configure_logging(loglevel: str | int | None = None, **_: Any) -> None:
    settings = get_settings()
    logs.configure(loglevel or settings.log_level, settings.log_format)


def make_celery() -> Celery:
    settings = get_settings()
    transport_options: dict[str, object] = {
        "visibility_timeout": settings.visibility_timeout_seconds
    }
    broker = settings.broker_url
    if settings.embedded_broker:
        # No broker configured: messages are files under the data dir, shared by the API
        # and its worker process. A message is gone once taken (no redelivery), which the
        # reconciler covers: leases expire, stalled items are re-sent.
        queue_dir = settings.broker_dir / "queue"
        control_dir = settings.broker_dir / "control"
        for folder in (queue_dir, control_dir):
            folder.mkdir(parents=True, exist_ok=True)
        broker = "filesystem://"
        transport_options |= {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "control_folder": str(control_dir),
        }
    app = Celery("priorforge", broker=broker, include=["workers.tasks"])
    app.conf.update(
        task_default_queue=settings.task_queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # A worker that loses the broker cancels what it runs (its messages go back on the
        # queue; the chunks' leases lapse and are taken up again) instead of finishing work
        # whose acknowledgement can no longer arrive.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_transport_options=transport_options,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return app


celery_app = make_celery()
