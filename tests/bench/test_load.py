"""bench/load.py: its HTTP client, its figures, and one short run against a real server."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import socket
import subprocess
import sys
import time

import pytest
import redis
from sqlalchemy import create_engine, text

from app.jobs.spec import JobSpec
from bench import load, seed
from tests.conftest import ROOT
from tests.services import PG_ADMIN_URL


def parse(raw: bytes) -> tuple[int, bytes, bool]:
    async def go() -> tuple[int, bytes, bool]:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return await load.read_response(reader)

    return asyncio.run(go())


def test_a_response_is_read_by_its_content_length_whatever_the_header_case() -> None:
    raw = b"HTTP/1.1 404 Not Found\r\nCONTENT-LENGTH: 5\r\nX: y\r\n\r\nhello" + b"HTTP/1.1 2"
    assert parse(raw) == (404, b"hello", False)
    closing = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nConnection: close\r\n\r\n"
    assert parse(closing) == (200, b"", True)


def test_a_response_without_content_length_is_a_protocol_error() -> None:
    with pytest.raises(load.ProtocolError, match="without Content-Length"):
        parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")


def test_percentiles_are_nearest_rank() -> None:
    values = list(range(1, 101))
    assert [load.percentile(values, p) for p in (0.5, 0.9, 0.99, 1.0)] == [50, 90, 99, 100]
    assert load.percentile([7], 0.99) == 7
    assert load.percentile([], 0.5) == 0.0


class TinyServer:
    """Keep-alive HTTP/1.1 on loopback: /ok answers 200, /bad 500, /drop hangs up."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                self.seen.append(path)
                if path == b"/drop":
                    return
                status = b"200 OK" if path == b"/ok" else b"500 Internal Server Error"
                body = b'{"path": "' + path + b'"}'
                length = str(len(body)).encode()
                writer.write(
                    b"HTTP/1.1 %s\r\ncontent-length: %s\r\n\r\n%s" % (status, length, body)
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def drive_tiny(
    paths: list[bytes], connections: int, seconds: float
) -> tuple[load.Sample, TinyServer]:
    tiny = TinyServer()

    async def go() -> load.Sample:
        server = await asyncio.start_server(tiny.handle, load.HOST, 0)
        port = server.sockets[0].getsockname()[1]
        requests = itertools.cycle([load.get_request(p.decode(), "t") for p in paths])
        async with server:
            return await load.drive(port, connections, seconds, requests.__next__)

    return asyncio.run(go()), tiny


def test_the_client_keeps_connections_alive_and_counts_what_it_sees() -> None:
    sample, tiny = drive_tiny([b"/ok", b"/ok", b"/ok", b"/bad"], connections=4, seconds=0.3)
    assert sample.requests == len(tiny.seen) > 100
    assert tiny.connections == 4  # one per client connection, however many requests
    assert sample.statuses[500] == tiny.seen.count(b"/bad")
    assert sample.errors == sample.statuses[500] > 0
    assert len(sample.failures) == load.FAILURES_SHOWN
    assert sample.failures[0] == '500 {"path": "/bad"}'
    assert len(sample.latencies) == sum(sample.statuses.values())


def test_a_dropped_connection_is_an_error_and_the_client_reconnects() -> None:
    sample, tiny = drive_tiny([b"/ok", b"/drop"], connections=1, seconds=0.2)
    drops = tiny.seen.count(b"/drop")
    assert drops > 2
    assert sample.broken == drops
    assert sample.errors == drops
    assert tiny.connections == tiny.seen.count(b"/ok")  # a new connection after each drop
    assert sample.failures[0].startswith("IncompleteReadError")


def test_tree_cpu_counts_descendants() -> None:
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {burn!r}])",
        ]
    )
    try:
        deadline = time.monotonic() + 10
        while load.tree_cpu_seconds(parent.pid) < 0.3:
            assert time.monotonic() < deadline, "the grandchild's CPU was never counted"
            assert parent.poll() is None, "the tree ended before its CPU was seen"
            time.sleep(0.05)
    finally:
        parent.wait()


def test_the_profile_summary_counts_each_stack_once_per_function() -> None:
    collapsed = "\n".join(
        [
            'process 1:"python";outer (app/jobs/service.py:1);outer (app/jobs/service.py:1);'
            "execute (sqlalchemy/orm/session.py:9) 3",
            'process 1:"python";handler (app/jobs/router.py:5);loads (json/decoder.py:2) 1',
        ]
    )
    lines = load.profile_summary(collapsed)
    assert lines[0] == "  4 samples holding the GIL; running, by package:"
    assert "     75.0%  sqlalchemy" in lines
    assert "     75.0%  outer (app/jobs/service.py)" in lines  # not 150% for the recursion
    assert "     25.0%  handler (app/jobs/router.py)" in lines
    assert load.profile_summary("") == ["  (no samples)"]


def test_submitted_specs_are_valid_and_keyed_uniquely() -> None:
    keys = set()
    for index in range(12):
        raw = load.submit_request("token", "run1", index)
        head, body = raw.split(b"\r\n\r\n", 1)
        JobSpec.model_validate_json(body)
        assert f"Content-Length: {len(body)}".encode() in head
        keys.add(re.search(rb"Idempotency-Key: (\S+)", head)[1])  # type: ignore[index]
    assert len(keys) == 12


def columns(out: str, phase: str) -> list[str]:
    """A phase's figures: requests, req/s, p50, p90, p99, max, errors, CPU..."""
    row = next(line for line in out.splitlines() if line.startswith(phase + " "))
    return row[len(phase) :].split()


@pytest.mark.slow
def test_a_short_run_measures_every_phase_and_leaves_nothing_behind(database_name: str) -> None:
    result = subprocess.run(
        [sys.executable, "bench/load.py", "--work-items", "2000", "--database", database_name]
        + ["--seconds-scale", "0.03", "--connections", "4", "--workers", "1"],
        cwd=ROOT,
        env=os.environ | {"PRIORFORGE_BENCH_PG": PG_ADMIN_URL},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for name in ("baseline GET /healthz", "GET /v1/jobs/{id}", "GET /v1/jobs?limit=50"):
        requests, *_, errors = columns(out, name)[:7]
        assert int(requests) > 0, out
        assert int(errors) == 0, out
    posted, *_, errors = columns(out, "POST /v1/jobs")[:7]
    assert int(posted) > 0, out
    assert int(errors) == 0, out
    assert "ratios to the baseline" in out
    assert "targets (issue 10):" in out
    removed = re.search(r"removed this run's (\d+) submitted jobs", out)
    assert removed is not None
    # Each connection POSTed at least once while warming up, each time a new job.
    assert int(removed[1]) >= int(posted) + 4

    run = re.search(r"/priorforge-load-([0-9a-f]{8})-", out)
    assert run is not None
    broker = redis.Redis.from_url(load.BROKER_URL)
    try:
        assert broker.keys(f"*priorforge-load-{run[1]}*") == []  # its queue is gone
    finally:
        broker.close()
    port = int(re.search(r"on port (\d+)", out)[1])  # type: ignore[index]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((load.HOST, port), timeout=1).close()  # the server is gone
    engine = create_engine(seed.database_url(database_name, PG_ADMIN_URL))
    try:
        with engine.connect() as connection:
            left = connection.scalar(
                text("SELECT count(*) FROM job WHERE idempotency_key LIKE 'load-%'")
            )
            keys = connection.scalar(text("SELECT count(*) FROM api_key"))
    finally:
        engine.dispose()
    assert left == 0
    assert keys == 2  # the seed's own; the run's were removed
