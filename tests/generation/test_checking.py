"""Replies checked in a checking process get exactly the values checking them here gives, and
a checking process that dies costs no reply; outcomes are recorded by the writing process the
same way, and one that dies costs no outcome."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.core.db import session_scope
from app.generation import checking, pipeline
from app.generation.checking import Checks
from app.generation.context import JobContext
from app.jobs.planner import PlannedItem
from app.models import Document
from tests.conftest import Team, spec, submit_local
from tests.generation.test_judge_and_decontam import heldout_situation
from tests.llm_server import compose


def replies(items: list[PlannedItem]) -> list[tuple[PlannedItem, str, str | None]]:
    """One reply each for acceptance, the length gate, the refusal gate and decontamination."""
    _scenario, situation = heldout_situation()
    text = compose("a news report", 1, 200)
    return [
        (items[0], text, "stop"),
        (items[1], "Far too short.", "stop"),
        (items[2], "I'm sorry, but I can't help with that request. " + text, "stop"),
        (items[3], f"{text}\n\n{situation}", "stop"),
    ]


@pytest.fixture
def context(team: Team, settings: Any) -> JobContext:
    job, _dispatcher = submit_local(
        team, spec(documents=4, length_words={"min": 40, "max": 900}), settings
    )
    with session_scope() as session:
        return JobContext.for_job(job, session, decontaminate=True)


def checked_there(context: JobContext, settings: Any) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        checks = Checks(context, settings)
        try:
            asked = replies(context.plan(0, 4))
            return list(await asyncio.gather(*(checks.check(*reply) for reply in asked)))
        finally:
            checks.close()

    return asyncio.run(run())


def test_a_checking_process_gives_the_values_checking_here_gives(
    context: JobContext, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = [pipeline.check(context, *reply) for reply in replies(context.plan(0, 4))]
    assert [(v["status"], v.get("reason")) for v in here] == [
        ("accepted", None),
        ("rejected", "too_short"),
        ("rejected", "refusal_or_meta"),
        ("rejected", "contaminated"),
    ]

    def not_here(*_args: Any) -> dict[str, Any]:
        raise AssertionError("checked in the worker's process, not in a checking process")

    monkeypatch.setattr(pipeline, "check_all", not_here)  # this process only; check uses it
    assert checked_there(context, settings) == here


def test_a_checking_process_that_dies_costs_no_reply(context: JobContext, settings: Any) -> None:
    here = [pipeline.check(context, *reply) for reply in replies(context.plan(0, 4))]
    first = checking.pool(settings)
    assert first is not None
    assert checked_there(context, settings) == here  # the process is up
    for pid in list(first._processes):  # the executor's own record of its processes
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(p.is_alive() for p in first._processes.values()) and time.monotonic() < deadline:
        time.sleep(0.05)

    assert checked_there(context, settings) == here  # checked here instead
    assert checking.pool(settings) is not first  # and a new process for what comes next
    assert checked_there(context, settings) == here


def test_checking_in_the_workers_own_process_when_asked(context: JobContext, settings: Any) -> None:
    here = [pipeline.check(context, *reply) for reply in replies(context.plan(0, 4))]
    in_process = settings.model_copy(update={"check_processes": 0})
    assert checking.pool(in_process) is None
    assert checked_there(context, in_process) == here


def test_checking_processes_started_from_a_thread_outlive_it(
    context: JobContext, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An embedded run starts them from its own thread, which ends with the run: the next
    run's replies must still be checked there (a parent-death signal would fire with the
    thread and kill them)."""
    checking.shutdown()
    starter = threading.Thread(target=lambda: checked_there(context, settings))
    starter.start()
    starter.join()
    started = checking.pool(settings)
    assert started is not None
    time.sleep(1.5)  # a killed process would be noticed by now

    def not_here(*_args: Any) -> dict[str, Any]:
        raise AssertionError("checked in the worker's process, not in a checking process")

    monkeypatch.setattr(pipeline, "check_all", not_here)  # check uses it too
    here_values = [v["status"] for v in checked_there(context, settings)]
    assert here_values == ["accepted", "rejected", "rejected", "rejected"]
    assert checking.pool(settings) is started


def outcomes_of(context: JobContext) -> list[pipeline.Outcome]:
    call = {"model": "m", "prompt_sha256": "", "template_version": ""}
    return [
        pipeline.Outcome(item, call | pipeline.check(context, item, raw, finish))
        for item, raw, finish in replies(context.plan(0, 4))
    ]


def recorded(context: JobContext, settings: Any) -> pipeline.ChunkReport:
    async def run() -> pipeline.ChunkReport:
        report = pipeline.ChunkReport(job_id=context.job_id)
        await Checks(context, settings).record(outcomes_of(context), report)
        return report

    return asyncio.run(run())


def documents(context: JobContext) -> list[tuple[int, str, str | None]]:
    with session_scope() as session:
        rows = session.execute(
            select(Document.item_index, Document.status, Document.reason)
            .where(Document.job_id == context.job_id)
            .order_by(Document.item_index)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


EXPECTED = [
    (0, "accepted", None),
    (1, "rejected", "too_short"),
    (2, "rejected", "refusal_or_meta"),
    (3, "rejected", "contaminated"),
]


def test_outcomes_are_recorded_by_the_writing_process(
    context: JobContext, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_here(*_args: Any) -> None:
        raise AssertionError("recorded in the worker's process, not in the writing process")

    monkeypatch.setattr(pipeline, "record_outcomes", not_here)  # this process only
    report = recorded(context, settings)
    assert (report.written, report.outcomes) == (4, {"accepted": 1, "rejected": 3})
    assert documents(context) == EXPECTED


def test_a_writing_process_that_dies_costs_no_outcome(
    context: JobContext, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    first = checking.writer(settings)
    assert first is not None
    asyncio.run(asyncio.to_thread(first.submit(int).result))  # the process is up
    for pid in list(first._processes):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(p.is_alive() for p in first._processes.values()) and time.monotonic() < deadline:
        time.sleep(0.05)

    report = recorded(context, settings)  # recorded here instead
    assert "the writing process died; writing here" in caplog.text
    assert (report.written, report.outcomes) == (4, {"accepted": 1, "rejected": 3})
    assert documents(context) == EXPECTED
    assert checking.writer(settings) is not first  # and a new process for what comes next
    assert recorded(context, settings).written == 0  # written once: a second delivery adds none
    assert documents(context) == EXPECTED


def test_recording_in_the_workers_own_threads_when_asked(
    context: JobContext, settings: Any
) -> None:
    in_process = settings.model_copy(update={"check_processes": 0})
    assert checking.writer(in_process) is None
    report = recorded(context, in_process)
    assert (report.written, report.outcomes) == (4, {"accepted": 1, "rejected": 3})
    assert documents(context) == EXPECTED


def test_processes_whose_worker_dies_as_they_start_end_too() -> None:
    """A worker killed while its checking and writing processes are still starting: they are
    adopted by another process before they can look at their parent, and must not take it
    for their worker (they lived on forever that way)."""
    mark = f"priorforge-test-{uuid.uuid4().hex}"
    starter = (
        "import os, signal\n"
        "from app.core.settings import get_settings\n"
        "from app.generation import checking\n"
        "checking.start(get_settings())\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = os.environ | {"PRIORFORGE_TEST_MARK": mark}
    worker = subprocess.run([sys.executable, "-c", starter], env=env, check=False)
    assert worker.returncode == -signal.SIGKILL

    def marked() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and mark.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:  # ended meanwhile, or not ours to read
                pass
        return found

    deadline = time.monotonic() + 20
    while marked() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marked() == []
