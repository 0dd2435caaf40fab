"""The dispatcher the API uses: Celery when a broker is configured."""

from __future__ import annotations

from app.core.errors import ConfigurationError
from app.core.settings import get_settings
from app.jobs.dispatch import CeleryDispatcher, Dispatcher


def get_dispatcher() -> Dispatcher:
    if not get_settings().broker_url:
        raise ConfigurationError(
            "no task broker is configured: set PRIORFORGE_BROKER_URL=redis://host:6379/0 "
            "and run 'priorforge worker' (or use 'priorforge generate' to run a job in-process)"
        )
    return CeleryDispatcher()
