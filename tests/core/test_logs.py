"""Log records as JSON or text lines, each naming the job it was logged for."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.config
import threading
from collections.abc import Iterator

import pytest

from app.core import logs


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    """A logger whose records go through our filter and formatter into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(logs.JobFilter())
    logger = logging.getLogger("priorforge.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, buffer, handler
    logger.removeHandler(handler)


def lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_json_line_carries_the_job_extras_and_the_traceback(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, buffer, handler = captured
    handler.setFormatter(logs.JsonFormatter())
    logger.info("no job here")
    with logs.job_context("job-1"):
        logger.warning("leasing %d items failed", 3, extra={"worker": "w:1"})
        try:
            raise RuntimeError("boom\nsecond line")
        except RuntimeError:
            logger.exception("it broke")
    outside, leased, broke = lines(buffer)
    assert "job_id" not in outside
    assert leased["job_id"] == "job-1"
    assert leased["message"] == "leasing 3 items failed"
    assert leased["level"] == "WARNING"
    assert leased["logger"] == "priorforge.test.logs"
    assert leased["worker"] == "w:1"
    assert str(leased["time"]).endswith("+00:00")
    assert "RuntimeError: boom" in str(broke["exception"])
    assert broke["job_id"] == "job-1"


def test_the_job_follows_into_tasks_and_threads_started_under_it(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, buffer, handler = captured
    handler.setFormatter(logs.JsonFormatter())

    async def chunk() -> None:
        await asyncio.gather(asyncio.to_thread(logger.info, "in a thread"), _task(logger))

    with logs.job_context("job-2"):
        runner = asyncio.Runner()
        try:
            import contextvars

            runner.run(chunk(), context=contextvars.copy_context())
        finally:
            runner.close()
    seen = lines(buffer)
    assert {record["message"] for record in seen} == {"in a thread", "in a task"}
    assert {record["job_id"] for record in seen} == {"job-2"}
    # A plain thread started elsewhere does not inherit it.
    thread = threading.Thread(target=logger.info, args=("elsewhere",))
    thread.start()
    thread.join()
    assert "job_id" not in lines(buffer)[-1]


async def _task(logger: logging.Logger) -> None:
    logger.info("in a task")


def test_text_lines_name_the_job_and_a_bad_format_is_refused(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, buffer, handler = captured
    handler.setFormatter(logging.Formatter(logs.TEXT))
    with logs.job_context("job-3"):
        logger.info("published")
    logger.info("idle")
    first, second = buffer.getvalue().splitlines()
    assert first.endswith("INFO priorforge.test.logs job=job-3: published")
    assert second.endswith("INFO priorforge.test.logs: idle")
    with pytest.raises(ValueError, match="one of text, json"):
        logs.dict_config("INFO", "xml")
    config = logs.dict_config(logging.DEBUG, "json")
    assert config["root"]["level"] == logging.DEBUG
    assert config["formatters"]["default"] == {"()": "app.core.logs.JsonFormatter"}
