"""The dispatcher the API uses: Celery, on the configured broker or the embedded one."""

from __future__ import annotations

from app.jobs.dispatch import CeleryDispatcher, Dispatcher


def get_dispatcher() -> Dispatcher:
    return CeleryDispatcher()
