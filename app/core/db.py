"""Engine, sessions and the after-commit hook used to enqueue work only once it is real."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from typing import Any

import pydantic_core
from psycopg.types import json as psycopg_json
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from app.core.settings import get_settings

_AFTER_COMMIT = "priorforge.after_commit"
log = logging.getLogger(__name__)

# Where a long-running use case gets short units of work of its own (session_scope, or a
# sessionmaker's begin in tests), instead of holding one transaction throughout.
Sessions = Callable[[], AbstractContextManager[Session]]


def make_engine(url: str, pool_size: int = 20, max_overflow: int = 10) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    # JSON columns (job specs, plans, metadata) parsed by pydantic-core's parser: several
    # times faster than the json module's, the same values.
    psycopg_json.set_json_loads(pydantic_core.from_json)
    # A pool as large as the requests a process serves at once: connections that overflow it
    # are closed on return, and opening one costs the database a new backend process.
    return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow)


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    settings = get_settings()
    if settings.effective_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return make_engine(
        settings.effective_database_url, settings.db_pool_size, settings.db_max_overflow
    )


@lru_cache(maxsize=1)
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@lru_cache(maxsize=1)
def get_reading_sessionmaker() -> sessionmaker[Session]:
    """Sessions for requests that only read (GET, HEAD): each statement commits by itself.

    At READ COMMITTED a transaction gives its statements no common snapshot anyway, so this
    changes nothing a reader sees; it saves the BEGIN and COMMIT round trips per request.
    """
    reading = get_engine().execution_options(isolation_level="AUTOCOMMIT")
    return sessionmaker(bind=reading, expire_on_commit=False)


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's current transaction commits (dropped on rollback)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    callbacks: list[Callable[[], None]] = session.info.pop(_AFTER_COMMIT, [])
    for callback in callbacks:
        try:
            callback()
        except Exception:
            # What was committed stays committed; work that failed to enqueue is found
            # again by the reconciler. Raising here would report a failure for a success.
            log.exception("after-commit callback %r failed", callback)


@event.listens_for(Session, "after_soft_rollback")
def _drop_after_commit(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:  # the outer transaction, not a savepoint
        session.info.pop(_AFTER_COMMIT, None)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work outside HTTP: commit on success, roll back on error."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
