"""The Celery application. Tasks are idempotent, so they are acknowledged late."""

from __future__ import annotations

from celery import Celery

from app.core.settings import get_settings


def make_celery() -> Celery:
    settings = get_settings()
    app = Celery("priorforge", broker=settings.broker_url or "memory://", include=["workers.tasks"])
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
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_seconds},
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return app


celery_app = make_celery()
