"""The HTTP API under load, on a database seeded with 10 million work items (bench/seed.py).

Starts ``priorforge serve`` in service mode against the seeded database (no worker: submitted
jobs just queue), then drives it over loopback with a minimal asyncio HTTP/1.1 keep-alive
client (raw streams, pre-built requests, ~32 connections: it costs far less CPU than the
server it shares the cores with). Each phase reports requests/s, p50/p90/p99/max latency and
errors (non-2xx or broken connections, the first bodies printed):

1. baseline: GET /healthz, 10 s - the framework's own ceiling, the ratios' denominator;
2. GET /v1/jobs/{id}, 60 s - the seeded jobs, a quarter of the reads on the giant one;
3. GET /v1/jobs, 20 s - first pages, cursor pages and the dataset filter, 50 jobs a page;
4. mixed, 30 s - status reads on 28 connections beside listings on 4;
5. POST /v1/jobs, 30 s - realistic specs (thousands to millions of documents), 202 expected
   (last: the jobs it adds would make the listings' first pages cheaper than the seeded ones).

Then each phase's rate as a ratio of the baseline's, and CPU seconds per 1,000 requests: the
server's process tree and the Postgres backends serving it (both from /proc), so that a later
change can be compared. Targets (issue 10): status reads >= 500 requests/s with p99 < 100 ms,
job listing p99 < 100 ms. ``--profile`` samples the server with py-spy during each phase and
prints where its time goes.

The seeded database stays for the next run (``--fresh`` seeds it anew); the jobs this run
POSTed, its API keys and its temp dir are removed at the end unless ``--keep`` is given.

    python bench/load.py [--work-items 10000000] [--seconds-scale 1] [--connections 32]
                         [--workers 2] [--fresh] [--keep] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, create_engine, text  # noqa: E402

from bench import seed  # noqa: E402

HOST = "127.0.0.1"
BROKER_URL = "redis://127.0.0.1:6379/0"
# Nothing listens there: no worker runs, so nothing ever calls the LLM.
DUMMY_LLM_URL = "http://127.0.0.1:9/v1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FAILURES_SHOWN = 3
READY_SECONDS = 120.0
# Requests still unanswered this long after a phase's end count as errors.
GRACE_SECONDS = 30.0
REQUEST_POOL = 4096
LIST_PAGES = 10
TARGET_RATE = 500.0
TARGET_P99_MS = 100.0


class ProtocolError(Exception):
    pass


# --- the client ---------------------------------------------------------------------------


def get_request(path: str, token: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{auth}\r\n".encode()


def post_request(path: str, token: str, body: bytes, headers: dict[str, str]) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, server closes) of one response with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 "):
        raise ProtocolError(f"not an HTTP/1.1 response: {head[:40]!r}")
    status = int(head[9:12])
    lowered = head.lower()
    at = lowered.find(b"\r\ncontent-length:")
    if at < 0:
        raise ProtocolError(f"response without Content-Length: {head[:200]!r}")
    end = lowered.index(b"\r\n", at + 2)
    length = int(lowered[at + 17 : end])
    body = await reader.readexactly(length) if length else b""
    return status, body, b"\r\nconnection: close\r\n" in lowered


@dataclass
class Sample:
    """What a phase's connections saw: latencies (ns) of answered requests, by status."""

    latencies: list[int] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    broken: int = 0
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300) + (
            self.broken
        )

    def failed(self, what: str) -> None:
        if len(self.failures) < FAILURES_SHOWN:
            self.failures.append(what)


async def drive(
    port: int, connections: int, seconds: float, next_request: Callable[[], bytes]
) -> Sample:
    """Closed-loop load: each connection sends the next request when its last is answered."""
    sample = Sample()
    started = time.perf_counter()
    deadline = started + seconds

    async def connection() -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            while time.perf_counter() < deadline:
                if writer is None:
                    reader, writer = await asyncio.open_connection(HOST, port)
                request = next_request()
                sent = time.perf_counter_ns()
                writer.write(request)
                try:
                    status, body, closing = await read_response(reader)
                except (OSError, asyncio.IncompleteReadError, ProtocolError) as exc:
                    sample.broken += 1
                    sample.failed(f"{type(exc).__name__}: {exc}")
                    writer.close()
                    writer = None
                    continue
                sample.latencies.append(time.perf_counter_ns() - sent)
                sample.statuses[status] += 1
                if not 200 <= status < 300:
                    sample.failed(f"{status} {body[:300].decode(errors='replace')}")
                if closing:
                    writer.close()
                    writer = None
        finally:
            if writer is not None:
                writer.close()

    tasks = [asyncio.create_task(connection()) for _ in range(connections)]
    done, pending = await asyncio.wait(tasks, timeout=seconds + GRACE_SECONDS)
    for task in pending:
        task.cancel()
        sample.broken += 1
        sample.failed(f"no answer {GRACE_SECONDS:.0f} s after the phase ended")
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            sample.broken += 1
            sample.failed(f"connection failed: {task.exception()!r}")
    sample.seconds = time.perf_counter() - started
    return sample


async def fetch(port: int, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request)
        status, body, _ = await read_response(reader)
        return status, body
    finally:
        writer.close()


def percentile(ordered: Sequence[int], share: float) -> float:
    """The nearest-rank percentile of sorted values (0 for none)."""
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), int(share * len(ordered) + 0.999999)))
    return float(ordered[rank - 1])


# --- CPU accounting from /proc --------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and of its children it has waited for)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    ticks = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return int(fields[1]), ticks / CLOCK_TICKS


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by a process and all its descendants (Linux /proc)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            stats[int(entry)] = stat
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        if pid in stats:
            total += stats[pid][1]
        stack.extend(children.get(pid, []))
    return total


def pids_cpu_seconds(pids: Sequence[int]) -> dict[int, float]:
    return {pid: stat[1] for pid in pids if (stat := _stat(pid)) is not None}


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


class BackendPoller:
    """CPU of the Postgres backends serving one database, polled from /proc in a thread.

    The server's pools open and close connections as load varies; polling every 100 ms sees
    all but those that live less than that (``sessions`` counts every one opened).
    """

    INTERVAL = 0.1

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.sessions = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="backend-poller", daemon=True)

    def _read(self) -> tuple[dict[int, float], int]:
        with self.engine.connect() as connection:
            pids = list(
                connection.scalars(
                    text(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid()"
                    )
                )
            )
            sessions = connection.scalar(
                text("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
            )
        return pids_cpu_seconds(pids), int(sessions or 0)

    def start(self) -> None:
        self.first, self.sessions = self._read()
        self.last = dict(self.first)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            seen, _ = self._read()
            self.last.update(seen)

    def stop(self) -> tuple[float, int]:
        """(CPU seconds the backends used while polled, sessions opened meanwhile)."""
        self._stop.set()
        self._thread.join()
        seen, sessions = self._read()
        self.last.update(seen)
        # A backend first seen after the start was born meanwhile: all its CPU counts.
        used = sum(cpu - self.first.get(pid, 0.0) for pid, cpu in self.last.items())
        return used, sessions - self.sessions


class Meter:
    """CPU used by the server, the database backends serving it, and this client."""

    def __init__(self, server_pid: int, engine: Engine) -> None:
        self.server_pid = server_pid
        self.engine = engine

    @contextmanager
    def measure(self, reading: dict[str, float]) -> Iterator[None]:
        poller = BackendPoller(self.engine)
        poller.start()
        server = tree_cpu_seconds(self.server_pid)
        client = _own_cpu()
        busy, total = machine_jiffies()
        try:
            yield
        finally:
            busy_after, total_after = machine_jiffies()
            reading["client"] = _own_cpu() - client
            reading["server"] = tree_cpu_seconds(self.server_pid) - server
            reading["db"], sessions = poller.stop()
            reading["sessions"] = sessions
            reading["busy"] = (busy_after - busy) / max(total_after - total, 1)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the server -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class Server:
    """``priorforge serve`` in a process group of its own, stopped with all its workers."""

    def __init__(self, database_url: str, workers: int, run_dir: Path, queue: str) -> None:
        self.port = free_port()
        self.log_path = run_dir / "server.log"
        env = os.environ | {
            "PRIORFORGE_DATABASE_URL": database_url,
            "PRIORFORGE_BROKER_URL": BROKER_URL,
            "PRIORFORGE_TASK_QUEUE": queue,
            "PRIORFORGE_STORAGE_URL": (run_dir / "objects").as_uri(),
            "PRIORFORGE_DATA_DIR": str(run_dir / "data"),
            "PRIORFORGE_LLM_BASE_URL": DUMMY_LLM_URL,
            # One team submits every job of the run: the bench measures the API, not the
            # team quota on jobs at once (tests/jobs/test_quotas.py checks that).
            "PRIORFORGE_TEAM_MAX_ACTIVE_JOBS": "1000000",
            "PRIORFORGE_TEAM_MAX_REQUESTS_PER_MINUTE": "0",  # and not its request rate
        }
        from app.core.process import die_with_parent

        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--host", HOST]
                + ["--port", str(self.port), "--workers", str(workers)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited; see {self.log_path}:\n{self._tail()}")
            try:
                if (await fetch(self.port, get_request("/healthz")))[0] == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.2)
        raise SystemExit(f"the server did not answer /healthz in {READY_SECONDS:.0f} s")

    def _tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])

    def stop(self) -> None:
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        # uvicorn's worker processes too, should any outlive their parent.
        _signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


# --- the workload --------------------------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    giant: uuid.UUID
    big: list[uuid.UUID]
    small: list[uuid.UUID]


def targets(jobs: Sequence[seed.JobShape]) -> Targets:
    return Targets(
        giant=next(j.id for j in jobs if j.kind == "giant"),
        big=[j.id for j in jobs if j.kind == "big"],
        small=[j.id for j in jobs if j.kind == "small"],
    )


def status_requests(found: Targets, token: str, rng: random.Random) -> list[bytes]:
    """A quarter of the reads on the giant job, a quarter on the big ones, half on small."""
    pool = []
    for _ in range(REQUEST_POOL):
        draw = rng.random()
        job = (
            found.giant
            if draw < 0.25
            else rng.choice(found.big)
            if draw < 0.5
            else rng.choice(found.small)
        )
        pool.append(get_request(f"/v1/jobs/{job}", token))
    return pool


async def list_requests(port: int, token: str, rng: random.Random) -> list[bytes]:
    """First pages, later pages by cursor (walked once beforehand) and the dataset filter."""
    cursors: list[str] = []
    path = "/v1/jobs?limit=50"
    for _ in range(LIST_PAGES):
        status, body = await fetch(port, get_request(path, token))
        if status != 200:
            raise SystemExit(f"GET {path} answered {status}: {body[:300]!r}")
        cursor = json.loads(body)["next_cursor"]
        if cursor is None:
            break
        cursors.append(cursor)
        path = f"/v1/jobs?limit=50&cursor={cursor}"
    paths = []
    for _ in range(REQUEST_POOL):
        draw = rng.random()
        if draw < 0.4 or not cursors:
            paths.append("/v1/jobs?limit=50")
        elif draw < 0.8:
            paths.append(f"/v1/jobs?limit=50&cursor={rng.choice(cursors)}")
        else:
            paths.append(f"/v1/jobs?limit=50&dataset={seed.DATASET}")
    return [get_request(p, token) for p in paths]


DOCUMENTS = (1_000, 5_000, 20_000, 100_000, 500_000, 2_000_000)
FORMS: tuple[list[str], ...] = (["news_report", "op_ed"], ["lecture_transcript"], [])


def submit_request(token: str, run: str, index: int) -> bytes:
    """A job spec like a data team's, under a fresh Idempotency-Key."""
    spec = {
        "dataset": seed.DATASET,
        "documents": DOCUMENTS[index % len(DOCUMENTS)],
        "stances": {"aligned": 3, "misaligned": 1} if index % 3 else {"aligned": 1},
        "surface_forms": FORMS[index % len(FORMS)],
        "length_words": {"min": 300, "max": 900},
        "sampling": {"temperature": 0.9, "max_tokens": 2048},
        "seed": index,
        "name": f"load run {run} job {index}",
    }
    body = json.dumps(spec).encode()
    return post_request("/v1/jobs", token, body, {"Idempotency-Key": f"load-{run}-{index}"})


# --- profiling ----------------------------------------------------------------------------


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return found if Path(found).exists() else None


def start_profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy on the server and its workers, sampling only threads that hold the GIL: what
    it shows is where the server's Python CPU time goes (waiting on Postgres is not)."""
    tool = py_spy()
    if tool is None:
        print("--profile: py-spy is not installed (pip install py-spy); not profiling")
        return None
    return subprocess.Popen(
        [tool, "record", "--pid", str(pid), "--subprocesses", "--gil", "--nonblocking"]
        + ["--rate", "100", "--format", "raw", "--duration", str(max(1, round(seconds)))]
        + ["--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def profile_summary(collapsed: str, top: int = 10) -> list[str]:
    """Shares of the samples: by package of the running frame, the application's functions
    on the stack (inclusive), and the running functions (self)."""
    packages: Counter[str] = Counter()
    app: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = [_Frame.parse(f) for f in stack.split(";") if not f.startswith("process ")]
        if not frames or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        packages[frames[-1].package] += count
        own[frames[-1].label] += count
        for label in {f.label for f in frames if f.package == "app"}:
            app[label] += count
    if not total:
        return ["  (no samples)"]

    def shares(counter: Counter[str]) -> list[str]:
        return [f"    {n / total:6.1%}  {name}" for name, n in counter.most_common(top)]

    return (
        [f"  {total} samples holding the GIL; running, by package:"]
        + shares(packages)
        + ["  application functions on the stack (inclusive):"]
        + shares(app)
        + ["  running functions (self):"]
        + shares(own)
    )


@dataclass(frozen=True)
class _Frame:
    function: str
    path: str

    @classmethod
    def parse(cls, frame: str) -> _Frame:
        """``fn (pkg/module.py:12)`` as seen in py-spy's raw output."""
        function, _, where = frame.partition(" (")
        return cls(function, where.rsplit(":", 1)[0])

    @property
    def package(self) -> str:
        head = self.path.split("/", 1)[0]
        return head.removesuffix(".py") or "?"

    @property
    def label(self) -> str:
        return f"{self.function} ({self.path})" if self.path else self.function


# --- the run ------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    seconds: float
    # Called for every request, the warm-up's included: a phase never repeats a request
    # that must be unique (an Idempotency-Key).
    next_request: Callable[[], bytes]
    sample: Sample = field(default_factory=Sample)
    cpu: dict[str, float] = field(default_factory=dict)
    profile: list[str] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return "-".join(re.findall(r"[a-z0-9]+", self.name.lower()))

    @property
    def rate(self) -> float:
        return self.sample.requests / self.sample.seconds if self.sample.seconds else 0.0

    def per_thousand(self, key: str) -> float:
        return 1000 * self.cpu.get(key, 0.0) / max(self.sample.requests, 1)

    def row(self) -> str:
        ordered = sorted(self.sample.latencies)
        ms = [percentile(ordered, p) / 1e6 for p in (0.5, 0.9, 0.99, 1.0)]
        return (
            f"{self.name:<26}{self.sample.requests:>8}{self.rate:>9.1f}"
            + "".join(f"{v:>9.1f}" for v in ms)
            + f"{self.sample.errors:>7}{self.per_thousand('server'):>9.2f}"
            + f"{self.per_thousand('db'):>8.2f}{self.per_thousand('client'):>8.2f}"
            + f"{int(self.cpu.get('sessions', 0)):>6}{self.cpu.get('busy', 0.0):>6.0%}"
        )


HEADER = (
    f"{'phase':<26}{'requests':>8}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}"
    f"{'max ms':>9}{'errors':>7}{'server':>9}{'db':>8}{'client':>8}{'conns':>6}{'busy':>6}"
)
LEGEND = (
    "server / db / client: CPU seconds per 1,000 requests of the server's processes, of the "
    "Postgres backends serving it (a lower bound: backends that closed meanwhile are missed) "
    "and of this client; conns: database sessions opened during the phase; busy: the whole "
    "machine's CPU use (other work included)"
)


async def run_phase(
    phase: Phase, port: int, connections: int, meter: Meter, run_dir: Path, profile: bool
) -> None:
    # A short warm-up, unmeasured: connections, pools and caches fill up first.
    await drive(port, connections, min(2.0, phase.seconds / 5), phase.next_request)
    profiler = None
    out = run_dir / f"profile-{phase.slug}.txt"
    if profile:
        profiler = start_profile(meter.server_pid, phase.seconds, out)
    with meter.measure(phase.cpu):
        phase.sample = await drive(port, connections, phase.seconds, phase.next_request)
    if profiler is not None:
        await asyncio.to_thread(profiler.wait, 30)
        phase.profile = profile_summary(out.read_text() if out.exists() else "")


# The mixed phase: most connections poll job status while a few list jobs, as clients and a
# dashboard would; the listing's latency is read there, where it competes with the reads.
MIXED_LISTING_CONNECTIONS = 4


async def run_mixed(
    reads: Phase, listing: Phase, port: int, connections: int, meter: Meter
) -> None:
    listers = min(MIXED_LISTING_CONNECTIONS, connections - 1)
    together = [
        (reads, connections - listers),
        (listing, listers),
    ]
    await asyncio.gather(*(drive(port, n, 2.0, p.next_request) for p, n in together))
    with meter.measure(reads.cpu):
        samples = await asyncio.gather(
            *(drive(port, n, reads.seconds, p.next_request) for p, n in together)
        )
    reads.sample, listing.sample = samples
    listing.cpu = {"busy": reads.cpu.get("busy", 0.0)}


async def run_bench(
    args: argparse.Namespace,
    url: str,
    jobs: list[seed.JobShape],
    run: str,
    run_dir: Path,
    keys: dict[str, str],
    engine: Engine,
) -> list[Phase]:
    server = Server(url, args.workers, run_dir, queue=f"priorforge-load-{run}")
    try:
        await server.wait_ready()
        meter = Meter(server.process.pid, engine)
        scale = args.seconds_scale
        rng = random.Random(0)
        found = targets(jobs)
        statuses = status_requests(found, keys["read"], rng)
        listings = await list_requests(server.port, keys["read"], rng)
        healthz = get_request("/healthz")
        submissions = (submit_request(keys["submit"], run, i) for i in itertools.count())
        alone = [
            Phase("baseline GET /healthz", 10 * scale, lambda: healthz),
            Phase("GET /v1/jobs/{id}", 60 * scale, itertools.cycle(statuses).__next__),
            Phase("GET /v1/jobs?limit=50", 20 * scale, itertools.cycle(listings).__next__),
        ]
        listers = min(MIXED_LISTING_CONNECTIONS, args.connections - 1)
        mixed = [
            Phase(f"mixed: status, {args.connections - listers} conns", 30 * scale,
                  itertools.cycle(statuses).__next__),
            Phase(f"mixed: listing, {listers} conns", 30 * scale,
                  itertools.cycle(listings).__next__),
        ]  # fmt: skip
        # Submissions last: the jobs they add (no counters yet) would make later listings'
        # first pages cheaper than the seeded ones the listing phases measure.
        submit = Phase("POST /v1/jobs", 30 * scale, submissions.__next__)
        print(
            f"server: {args.workers} worker process(es) on port {server.port}; "
            f"client: {args.connections} connections; load average {_load()}"
        )
        print(HEADER)
        for phase in alone:
            await run_phase(phase, server.port, args.connections, meter, run_dir, args.profile)
            print(phase.row(), flush=True)
        await run_mixed(mixed[0], mixed[1], server.port, args.connections, meter)
        for phase in mixed:
            print(phase.row(), flush=True)
        await run_phase(submit, server.port, args.connections, meter, run_dir, args.profile)
        print(submit.row(), flush=True)
        return [*alone, *mixed, submit]
    finally:
        server.stop()


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def summarize(phases: list[Phase]) -> None:
    print(LEGEND)
    baseline = phases[0]
    print(f"\nratios to the baseline ({baseline.rate:.1f} req/s on /healthz):")
    for phase in phases[1:]:
        ratio = phase.rate / baseline.rate if baseline.rate else 0.0
        print(f"  {phase.name:<26}{ratio:6.2f}")
    for phase in phases:
        for failure in phase.sample.failures:
            print(f"  {phase.name}: {failure}")
    reads, listing = phases[1], phases[2]
    p99 = [percentile(sorted(p.sample.latencies), 0.99) / 1e6 for p in (reads, listing)]
    print("\ntargets (issue 10):")
    print(
        f"  status reads {reads.rate:.0f} req/s (>= {TARGET_RATE:.0f}) with p99 {p99[0]:.1f} ms "
        f"(< {TARGET_P99_MS:.0f}): {_verdict(reads.rate >= TARGET_RATE and p99[0] < TARGET_P99_MS)}"
    )
    print(
        f"  job listing alone on every connection: p99 {p99[1]:.1f} ms "
        f"(< {TARGET_P99_MS:.0f}): {_verdict(p99[1] < TARGET_P99_MS)}"
    )
    mixed = [p for p in phases if p.name.startswith("mixed: ")]
    if mixed:
        mixed_reads, mixed_listing = mixed
        p99_mixed = percentile(sorted(mixed_listing.sample.latencies), 0.99) / 1e6
        print(
            f"  job listing beside status reads ({mixed_listing.name}, "
            f"{mixed_reads.rate:.0f} reads/s): p99 {p99_mixed:.1f} ms "
            f"(< {TARGET_P99_MS:.0f}): {_verdict(p99_mixed < TARGET_P99_MS)}"
        )
    for phase in phases:
        if phase.profile:
            print(f"\nwhere the server's time goes: {phase.name}")
            print("\n".join(phase.profile))


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def cleanup(engine: Engine, run: str, keys: dict[str, str]) -> int:
    """Remove what this run added to the seeded database: its jobs (and their items), its
    keys and its store binding. Returns the number of jobs removed."""
    from app.teams.keys import parse_prefix

    with engine.begin() as connection:
        removed = connection.execute(
            text("DELETE FROM job WHERE idempotency_key LIKE :p"), {"p": f"load-{run}-%"}
        ).rowcount
        prefixes = [p for p in (parse_prefix(t) for t in keys.values()) if p]
        connection.execute(text("DELETE FROM api_key WHERE prefix = ANY(:p)"), {"p": prefixes})
    forget_store(engine)
    vacuum(engine)
    return int(removed)


def vacuum(engine: Engine) -> None:
    """Reclaim the deleted jobs now: the listing's backward index scan would otherwise step
    over every dead entry of the last run's jobs, the newest ones, in the next run."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE job, job_tally"))


def forget_store(engine: Engine) -> None:
    """Each run serves from a fresh temp store: unbind the database from the last run's."""
    from app.storage.repository import STORE_KEY

    with engine.begin() as connection:
        connection.execute(text("DELETE FROM deployment WHERE key = :k"), {"k": STORE_KEY})


def drop_queue(queue: str) -> None:
    """Forget the run's queue: its messages and kombu's bindings for it."""
    import redis

    client = redis.Redis.from_url(BROKER_URL)
    try:
        client.delete(queue, *(f"_kombu.{kind}.{queue}" for kind in KOMBU_BINDINGS))
    finally:
        client.close()


KOMBU_BINDINGS = ("binding", "binding_permanent")


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-items", type=int, default=seed.DEFAULT_WORK_ITEMS)
    parser.add_argument("--seconds-scale", type=float, default=1.0, help="e.g. 0.1: a smoke run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--database", help="default: priorforge_load_<work items>")
    parser.add_argument("--fresh", action="store_true", help="drop the database and seed anew")
    parser.add_argument("--keep", action="store_true", help="keep this run's jobs, keys, files")
    parser.add_argument("--profile", action="store_true", help="sample the server with py-spy")
    args = parser.parse_args()
    if not 0 < args.seconds_scale <= 10:
        parser.error("--seconds-scale must be in (0, 10]")
    if not 1 <= args.connections <= 1000 or not 1 <= args.workers <= 64:
        parser.error("--connections must be 1-1000 and --workers 1-64")
    try:
        seed.plan_jobs(args.work_items)
    except ValueError as exc:
        parser.error(str(exc))
    signal.signal(signal.SIGTERM, _interrupt)

    name = args.database or seed.database_name(args.work_items)
    url = seed.ensure_database(name, fresh=args.fresh)
    seeded = seed.seed(url, args.work_items)
    seed.report(seeded)
    run = secrets.token_hex(4)
    run_dir = Path(tempfile.mkdtemp(prefix=f"priorforge-load-{run}-"))
    engine = create_engine(url, pool_size=1, max_overflow=0)
    keys = seed.issue_keys(url)
    forget_store(engine)
    vacuum(engine)  # also after an interrupted or --keep run
    try:
        phases = asyncio.run(run_bench(args, url, seeded.jobs, run, run_dir, keys, engine))
        summarize(phases)
        print(f"\nload average at the end: {_load()}")
    finally:
        if args.keep:
            print(f"kept: this run's jobs (Idempotency-Key load-{run}-*), keys, and {run_dir}")
        else:
            removed = cleanup(engine, run, keys)
            print(f"removed this run's {removed} submitted jobs, its keys and {run_dir}")
            shutil.rmtree(run_dir, ignore_errors=True)
        drop_queue(f"priorforge-load-{run}")
        engine.dispose()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted: the server is stopped and this run's additions removed")
        sys.exit(130)
