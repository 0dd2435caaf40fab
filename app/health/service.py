"""Dependency checks for /readyz: each returns "ok" or the error it hit."""

from __future__ import annotations

from sqlalchemy import text

from app.core.db import get_engine
from app.core.settings import get_settings
from app.storage.default import get_store


def check_dependencies() -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # reported, not raised: readiness is a report
        checks["database"] = f"error: {type(exc).__name__}: {exc}"[:300]
    try:
        get_store().check()
        checks["storage"] = "ok"
    except Exception as exc:
        checks["storage"] = f"error: {type(exc).__name__}: {exc}"[:300]
    settings = get_settings()
    if settings.embedded_broker:
        try:
            probe = settings.broker_dir / "queue" / ".readyz"
            probe.parent.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
            checks["broker"] = "ok"
        except OSError as exc:
            checks["broker"] = f"error: embedded broker folder: {exc}"[:300]
    else:
        try:
            from workers.celery_app import celery_app

            with celery_app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"error: {type(exc).__name__}: {exc}"[:300]
    return checks
