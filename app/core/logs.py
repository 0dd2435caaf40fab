"""How the service's processes log: a line per record on stderr, as text or as JSON
(``PRIORFORGE_LOG_FORMAT``), each carrying the job it was logged for.

A worker sets the job for everything a chunk does (``job_context``): the chunk's event loop,
its tasks and the threads it hands work to copy the context they start in, so a record
logged anywhere below carries ``job_id`` without naming it. The API process and the worker
process configure logging the same way: uvicorn with ``dict_config`` (in each of its
processes), Celery through its ``setup_logging`` signal (workers/celery_app.py).
"""

from __future__ import annotations

import functools
import json
import logging
import logging.config
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
JOB_ID: ContextVar[str | None] = ContextVar("priorforge_job_id", default=None)
FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s%(job)s: %(message)s"

# What every LogRecord has: anything else on a record was passed as ``extra=`` and is kept.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "job_id",
    "job",
}


@contextmanager
def job_context(job_id: uuid.UUID | str) -> Iterator[None]:
    """Records logged inside the block (and in tasks and threads started there) name the job."""
    token = JOB_ID.set(str(job_id))
    try:
        yield
    finally:
        JOB_ID.reset(token)


def for_job(function: Callable[Concatenate[Any, P], R]) -> Callable[Concatenate[Any, P], R]:
    """Run ``function`` in the ``job_context`` of its first argument, a job id."""

    @functools.wraps(function)
    def logged(job_id: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with job_context(job_id):
            return function(job_id, *args, **kwargs)

    return logged


class JobFilter(logging.Filter):
    """Puts the current job on each record (``job_id``; ``job``, " job=…" or "", for text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        job_id = getattr(record, "job_id", None) or JOB_ID.get()
        record.job_id = job_id
        record.job = f" job={job_id}" if job_id else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, job_id when
    there is one, the exception's traceback, and what was passed as ``extra=``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        job_id = getattr(record, "job_id", None)
        if job_id:
            entry["job_id"] = job_id
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def dict_config(level: str | int = "INFO", fmt: str = "text") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for a process: the root logger to stderr, and uvicorn's
    and Celery's loggers through it (so their records are formatted alike)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: one of {', '.join(FORMATS)}")
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if fmt == "json" else {"format": TEXT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"job": {"()": f"{__name__}.JobFilter"}},
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "filters": ["job"],
                "formatter": "default",
            }
        },
        "root": {
            "level": level.upper() if isinstance(level, str) else level,
            "handlers": ["stderr"],
        },
        "loggers": {
            name: {"handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery")
        },
    }


def _level(level: str | int) -> str | int:
    return level.upper() if isinstance(level, str) else level


_configured: tuple[str | int, str] | None = None


def configure(level: str | int = "INFO", fmt: str = "text") -> None:
    """Configure this process's logging (see ``dict_config``)."""
    global _configured
    logging.config.dictConfig(dict_config(level, fmt))
    _configured = (level, fmt)


def configured() -> tuple[str | int, str] | None:
    """(level, format) if ``configure`` set this process up: what a helper process it
    starts configures too (None: leave the helper's logging as Python's default)."""
    return _configured
