"""Dependency checks for /readyz (each returns "ok" or the error it hit), and /metrics."""

from __future__ import annotations

import hmac
import logging
from typing import Any

import redis
from sqlalchemy import text

from app.core.db import get_engine, session_scope
from app.core.errors import Unauthorized
from app.core.settings import get_settings
from app.health import workers
from app.health.metrics import exposition
from app.health.repository import read as read_metrics
from app.llm.limits import LimiterState, limiter_states
from app.llm.provider import redis_url
from app.storage.default import get_store

log = logging.getLogger(__name__)


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


def check_metrics_token(authorization: str | None) -> None:
    """With ``PRIORFORGE_METRICS_TOKEN`` set, /metrics answers only a scraper that sends it."""
    expected = get_settings().metrics_token
    if expected is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    secret = expected.get_secret_value()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), secret):
        raise Unauthorized(
            "/metrics needs 'Authorization: Bearer <PRIORFORGE_METRICS_TOKEN>' "
            "(a Prometheus scrape config's `authorization: {credentials: …}`)"
        )


def queue_depths() -> dict[str, int | None]:
    """Messages waiting in the task queue (None: the broker did not answer)."""
    settings = get_settings()
    if settings.broker_url is None or not settings.broker_url.startswith(("redis://", "rediss://")):
        return {}
    try:
        client = redis.Redis.from_url(
            settings.broker_url, socket_timeout=1, socket_connect_timeout=1
        )
        try:
            return {settings.task_queue: int(client.llen(settings.task_queue))}
        finally:
            client.close()
    except redis.RedisError:
        return {settings.task_queue: None}


def live_workers() -> list[dict[str, Any]]:
    """What every live worker published (none without Redis, or while it is away)."""
    url = redis_url(get_settings())
    if not url:
        return []
    try:
        return workers.read(url)
    except redis.RedisError:
        log.warning("could not read the workers' statuses", exc_info=True)
        return []


def limiters() -> list[LimiterState]:
    """The shared LLM limiters' state (none without Redis, or while it is away)."""
    url = redis_url(get_settings())
    if not url:
        return []
    try:
        return limiter_states(url)
    except redis.RedisError:
        log.warning("could not read the rate limiters", exc_info=True)
        return []


def metrics() -> bytes:
    queues = queue_depths()
    with session_scope() as session:
        snapshot = read_metrics(session, queues)
    return exposition(snapshot, live_workers(), limiters())
