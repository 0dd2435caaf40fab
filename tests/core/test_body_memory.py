"""A real server given 200 MB bodies keeps its memory: nothing is buffered before it is allowed.

Bodies go over a raw socket so the test controls exactly what is sent; the server's peak
resident memory (VmHWM) is read from /proc after every case.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import LiveServer, Team

MiB = 1 << 20
BODY = 200 * MiB
PEAK_LIMIT = 300 * MiB


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def post_huge(
    server: LiveServer, path: str, headers: dict[str, str], *, chunked: bool
) -> tuple[int, int]:
    """POST ``BODY`` bytes of JSON-ish filler; return (status, bytes the socket took)."""
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {BODY}")
    block = b" " * MiB
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            while sent < BODY:
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered: stop sending, as a real client would
                frame = f"{len(block):x}\r\n".encode() + block + b"\r\n" if chunked else block
                sock.sendall(frame)
                sent += len(block)
            if chunked and sent >= BODY:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed on us after its answer
        response = b""
        try:
            while b"\r\n" not in response:
                data = sock.recv(65536)
                if not data:
                    break
                response += data
        except ConnectionResetError:
            pass
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response.split(b" ", 2)[1]), sent


@pytest.mark.slow
def test_200_mb_bodies_leave_the_api_under_300_mb(
    live_server: Callable[..., LiveServer], team: Team
) -> None:
    server = live_server("--workers", "1")  # the measured process is the one serving
    key = {"Authorization": f"Bearer {team.keys['submit']}"}
    json_type = {"Content-Type": "application/json"}
    jsonl_type = {"Content-Type": "application/jsonl"}
    cases = [
        ("/v1/jobs", json_type, False, 401),
        ("/v1/jobs", json_type, True, 401),
        ("/v1/scenarios", jsonl_type, True, 401),
        ("/v1/jobs", json_type | key, False, 413),
        ("/v1/jobs", json_type | key, True, 413),
        ("/v1/scenarios", jsonl_type | key, False, 413),
        ("/v1/scenarios", jsonl_type | key, True, 413),
        ("/v1/eval-sets?name=big", jsonl_type | key, True, 413),
    ]
    results = []
    for path, headers, chunked, expected in cases:
        status, sent = post_huge(server, path, headers, chunked=chunked)
        results.append((path, chunked, status, sent, peak_rss(server.process.pid)))
        assert status == expected, results
    peak = max(r[-1] for r in results)
    assert peak < PEAK_LIMIT, [
        f"{p} chunked={c}: {s}, {m / MiB:.0f} MiB" for p, c, s, _n, m in results
    ]
    # The server still answers, and no body was swallowed whole.
    assert all(sent < BODY for _p, _c, _s, sent, _m in results), results


def test_serve_with_a_broker_runs_one_api_process_per_cpu(
    live_server: Callable[..., LiveServer],
) -> None:
    import os

    server = live_server()
    expected = min(os.cpu_count() or 1, 8)
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    serving = [  # uvicorn's spawned workers, not multiprocessing's resource tracker
        pid
        for pid in children.read_text().split()
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(serving) == (expected if expected > 1 else 0), serving
    assert f"with {expected} process(es)" in server.log.read_text()
