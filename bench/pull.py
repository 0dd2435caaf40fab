"""Pull throughput over loopback, as a ratio of reading the same files straight from the store.

A synthetic dataset version (zstd JSONL shards of Dolma-style records, no LLM) is written
into an object store, its manifest and version row beside it, and ``priorforge serve``
(embedded mode: SQLite in a temp data dir, with its worker) serves it. Each round, in the
same run, into a fresh local directory:

- store read: every file straight from the store, in the same 32 MiB ranges with the same
  number of threads, each range written into place in its local file (what ``aws s3 cp``
  does; no checksum). The ratios are to this.
- store read + sha256: the same, then every file hashed (threads): what verifying costs.
- pull: ``app.pull.pull`` through the API, which checks every sha256.
- pull --redirect (S3): the API answers 307 to a presigned URL; the bytes come from S3.

Stores: the local filesystem, and moto's S3 server on loopback (Python, far slower than S3:
its figures compare paths on one server, not S3 itself). moto reads a whole object for every
ranged GET, so S3 files are kept within one 32 MiB range each. The best of ``--repeats``
rounds is printed, with the CPU seconds of this process, the API server and moto in it.

    python bench/pull.py [--files 8] [--mib 32] [--s3-files 8] [--s3-mib 16] [--workers 8]
                         [--repeats 3] [--no-s3]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import zstandard  # noqa: E402

from app.core.process import die_with_parent  # noqa: E402
from app.pull import Client, pull  # noqa: E402
from app.pull.client import CHUNK, sha256_file  # noqa: E402
from app.storage import ObjectStore, open_store  # noqa: E402
from tests.llm_server import compose  # noqa: E402
from tests.s3_server import ENVIRONMENT, S3TestServer  # noqa: E402

MiB = 1 << 20
DATASET = "pull-bench"
ZSTD_LEVEL = 3  # shards use 10; 3 writes the same kind of bytes several times faster
LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
READY_SECONDS = 60
TARGET = 0.8


# --- the data ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    path: str  # relative to the dataset's prefix, as the manifest lists it
    source: Path
    bytes: int
    sha256: str
    records: int
    characters: int
    uncompressed_bytes: int


def write_shards(folder: Path, count: int, size: int, seed: int) -> list[Shard]:
    """``count`` zstd JSONL files of at least ``size`` bytes each, of pseudo-English records."""
    rng = random.Random(seed)
    texts = [compose(f"pull-{seed}-{i}", i, rng.randint(300, 1500)) for i in range(1500)]
    folder.mkdir(parents=True, exist_ok=True)
    shards = []
    for index in range(count):
        path = f"documents/aligned/{seed:02d}-{index:05d}.jsonl.zst"
        source = folder / path.replace("/", "-")
        out = io.BytesIO()
        records = characters = uncompressed = 0
        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
        with compressor.stream_writer(out, closefd=False) as writer:
            while out.tell() < size:
                text = rng.choice(texts)
                record = {
                    "id": f"{seed}-{index}-{records}",
                    "text": text,
                    "source": "priorforge",
                    "added": "2025-01-01T00:00:00.000Z",
                    "created": "2025-01-01T00:00:00.000Z",
                    "metadata": {"dataset": DATASET, "item_index": records, "stance": "aligned"},
                }
                line = json.dumps(record).encode() + b"\n"
                writer.write(line)
                records += 1
                characters += len(text)
                uncompressed += len(line)
        data = out.getvalue()
        source.write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        shards.append(Shard(path, source, len(data), digest, records, characters, uncompressed))
    return shards


def setup_version(environment: dict[str, str], shards: list[Shard]) -> dict[str, Any]:
    """In a fresh process (settings come from its environment): migrate the embedded
    database, bind the store, put the files and manifest, insert the version row, issue a
    read key. Returns the key and the files' object keys."""
    os.environ.update(environment)
    from app.core import migrate
    from app.core.db import session_scope
    from app.core.settings import get_settings
    from app.datasets import repository
    from app.datasets.manifest import ManifestFile, build_manifest, sha256_hex
    from app.datasets.service import dataset_prefix, ensure_dataset
    from app.models import DatasetVersion
    from app.storage.default import get_store
    from app.teams.keys import Role
    from app.teams.service import create_key

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.effective_database_url)
    store = get_store()
    with session_scope() as session:
        issued = create_key(session, "bench", Role.READ)
        dataset = ensure_dataset(session, issued.team.id, DATASET)
        prefix = dataset_prefix(dataset)
        for shard in shards:
            store.put_file(f"{prefix}/{shard.path}", shard.source)
        files, first = [], 0
        for shard in shards:
            files.append(
                ManifestFile(
                    path=shard.path,
                    stance="aligned",
                    first_position=first,
                    records=shard.records,
                    characters=shard.characters,
                    bytes=shard.bytes,
                    uncompressed_bytes=shard.uncompressed_bytes,
                    sha256=shard.sha256,
                )
            )
            first += shard.records
        body = build_manifest(
            dataset=DATASET, version=1, created=datetime.now(UTC), files=files, lineage={}
        )
        key = f"{prefix}/manifests/{sha256_hex(body)}.json"
        store.put_bytes(key, body)
        repository.add_version(
            session,
            DatasetVersion(
                dataset_id=dataset.id,
                number=1,
                manifest_key=key,
                manifest_sha256=sha256_hex(body),
                files=len(files),
                records=sum(f.records for f in files),
                bytes=sum(f.bytes for f in files),
            ),
        )
        return {"token": issued.token, "keys": [f"{prefix}/{s.path}" for s in shards]}


def sha256_rate(seconds: float = 0.5) -> float:
    """Bytes per second that one core hashes with sha256 (hashlib, 1 MiB blocks)."""
    block = os.urandom(MiB)
    digest = hashlib.sha256()
    hashed, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        digest.update(block)
        hashed += len(block)
    return hashed / elapsed


# --- processes --------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its waited-for children so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime, stime, cutime, cstime are fields 14-17; after the ")" they start at index 11.
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class ApiServer:
    """``priorforge serve --port 0`` (embedded mode) in a process group of its own."""

    def __init__(self, environment: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--port", "0"],
                cwd=ROOT,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        self.base_url = self._wait_until_ready()

    def _wait_until_ready(self) -> str:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            log = self.log_path.read_text(errors="replace")
            bound = LISTENING.search(log)
            # The embedded worker imports Celery and the pipeline: let it settle first, so it
            # does not take a core from the first round.
            if bound and "ready." in log:
                return f"http://127.0.0.1:{bound.group(1)}"
            time.sleep(0.2)
        self.stop()
        tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        raise SystemExit(f"the API server did not start; {self.log_path}:\n{tail}")

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                continue
        self.process.wait()


def environment(data_dir: Path, storage_url: str, endpoint: str | None) -> dict[str, str]:
    """This process's environment for an embedded-mode server on ``storage_url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIORFORGE_")}
    env |= {
        "PRIORFORGE_DATA_DIR": str(data_dir),
        "PRIORFORGE_STORAGE_URL": storage_url,
        "PRIORFORGE_LLM_BASE_URL": "http://127.0.0.1:9/v1",  # never called: no job runs
    }
    if endpoint:
        env |= {"PRIORFORGE_S3_ENDPOINT_URL": endpoint, **ENVIRONMENT}
    return env


# --- the measurements -------------------------------------------------------------------------


def ranges(size: int, chunk: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk, size) - 1) for start in range(0, size, chunk)]


def read_from_store(
    store: ObjectStore, keys: list[str], shards: list[Shard], dest: Path, workers: int
) -> None:
    """The baseline: ranged reads in parallel, each written into place in its local file."""
    dest.mkdir(parents=True)
    targets = []
    for shard in shards:
        target = dest / shard.path
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            out.truncate(shard.bytes)
        targets.append(target)

    def fetch(target: Path, key: str, start: int, end: int) -> None:
        fd = os.open(target, os.O_WRONLY)
        try:
            offset = start
            for block in store.iter_range(key, start, end):
                os.pwrite(fd, block, offset)
                offset += len(block)
            if offset != end + 1:
                raise RuntimeError(f"{key}: {offset - start} bytes of {end - start + 1}")
        finally:
            os.close(fd)

    with ThreadPoolExecutor(workers) as pool:
        jobs = [
            pool.submit(fetch, target, key, start, end)
            for target, key, shard in zip(targets, keys, shards, strict=True)
            for start, end in ranges(shard.bytes, CHUNK)
        ]
        for job in jobs:
            job.result()


@dataclass
class Timing:
    seconds: float = float("inf")
    cpu_client: float = 0.0
    cpu_server: float = 0.0
    cpu_s3: float = 0.0


def measure(
    timing: Timing, run: Callable[[Path], None], dest: Path, cpus: Callable[[], tuple[float, ...]]
) -> None:
    """Run once into a fresh ``dest``; keep the figures if this run is the fastest so far."""
    shutil.rmtree(dest, ignore_errors=True)
    before = (time.process_time(), *cpus())
    started = time.perf_counter()
    run(dest)
    seconds = time.perf_counter() - started
    after = (time.process_time(), *cpus())
    client, server, s3 = (b - a for a, b in zip(before, after, strict=True))
    if seconds < timing.seconds:
        timing.seconds, timing.cpu_client, timing.cpu_server, timing.cpu_s3 = (
            seconds,
            client,
            server,
            s3,
        )
    shutil.rmtree(dest, ignore_errors=True)


@dataclass(frozen=True)
class Row:
    store: str
    how: str
    mib_per_s: float
    ratio: float
    timing: Timing


def leg(
    name: str,
    shards: list[Shard],
    run_dir: Path,
    storage_url: str,
    args: argparse.Namespace,
    s3: S3TestServer | None = None,
) -> list[Row]:
    """Set a version up on one store, serve it, and time the baseline against pull."""
    env = environment(run_dir / "data", storage_url, s3.endpoint if s3 else None)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        made = pool.submit(setup_version, env, shards).result()
    store = open_store(storage_url, endpoint_url=s3.endpoint if s3 else None)
    server = ApiServer(env, run_dir / "serve.log")
    try:
        client = Client(server.base_url, made["token"])
        total = sum(s.bytes for s in shards)

        def cpus() -> tuple[float, float]:
            moto = cpu_seconds(s3.process.pid) if s3 and s3.process else 0.0
            return server.cpu(), moto

        def from_store(dest: Path) -> None:
            read_from_store(store, made["keys"], shards, dest, args.workers)

        def from_store_hashed(dest: Path) -> None:
            from_store(dest)
            with ThreadPoolExecutor(args.workers) as pool:
                found = pool.map(lambda s: sha256_file(dest / s.path), shards)
                assert list(found) == [s.sha256 for s in shards]

        def through_api(redirect: bool) -> Callable[[Path], None]:
            def run(dest: Path) -> None:
                report = pull(client, DATASET, 1, dest, workers=args.workers, redirect=redirect)
                assert report.bytes_downloaded == total, report

            return run

        runs: dict[str, Callable[[Path], None]] = {
            "store read": from_store,
            "store read + sha256": from_store_hashed,
            "pull": through_api(False),
        }
        if s3 is not None:
            runs["pull --redirect"] = through_api(True)
        timings = {label: Timing() for label in runs}
        for _round in range(args.repeats):
            for label, run in runs.items():
                measure(timings[label], run, run_dir / "dest", cpus)
    finally:
        server.stop()

    baseline = timings["store read"].seconds
    return [
        Row(name, label, total / MiB / t.seconds, baseline / t.seconds, t)
        for label, t in timings.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8, help="files on the local store")
    parser.add_argument("--mib", type=int, default=32, help="MiB per file, local store")
    parser.add_argument("--s3-files", type=int, default=8, help="files on S3 (moto)")
    parser.add_argument("--s3-mib", type=int, default=16, help="MiB per file, S3 (moto)")
    parser.add_argument("--workers", type=int, default=8, help="threads, pull and baseline")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the best is kept")
    parser.add_argument("--no-s3", action="store_true", help="the local store only")
    args = parser.parse_args()

    os.environ.update(ENVIRONMENT)  # moto's credentials, for this process's boto3 client
    tmp = Path(tempfile.mkdtemp(prefix="priorforge-bench-pull-"))
    s3: S3TestServer | None = None
    try:
        print(
            f"{args.workers} threads, {CHUNK // MiB} MiB ranges, best of {args.repeats}; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
        )
        local = write_shards(tmp / "src-local", args.files, args.mib * MiB, seed=1)
        print(f"local store: {len(local)} files, {sum(s.bytes for s in local) / MiB:.1f} MiB")
        rows = leg("local", local, tmp / "local", (tmp / "local" / "objects").as_uri(), args)
        if not args.no_s3:
            remote = write_shards(tmp / "src-s3", args.s3_files, args.s3_mib * MiB, seed=2)
            print(f"s3 (moto):   {len(remote)} files, {sum(s.bytes for s in remote) / MiB:.1f} MiB")
            s3 = S3TestServer(tmp / "moto.log").start()
            bucket = s3.new_bucket()
            rows += leg("s3", remote, tmp / "s3", f"s3://{bucket}/bench", args, s3)
        print()
        print("| store | how | MiB/s | ratio to the store read | CPU s: bench | API | moto |")
        print("|---|---|---|---|---|---|---|")
        for row in rows:
            t = row.timing
            moto = f"{t.cpu_s3:.2f}" if row.store == "s3" else "-"
            print(
                f"| {row.store} | {row.how} | {row.mib_per_s:.0f} | {row.ratio:.2f} | "
                f"{t.cpu_client:.2f} | {t.cpu_server:.2f} | {moto} |"
            )
        print(f"target: pull at >= {TARGET} of the store read")
        print()
        rate = sha256_rate()
        cores = os.cpu_count() or 1
        print(
            f"sha256 here: {rate / MiB:.0f} MiB/s per core. A verified copy does at least the "
            f"store read's CPU work plus the hashing; spread perfectly over {cores} cores, "
            "that caps a pull's ratio at:"
        )
        for store_name in dict.fromkeys(row.store for row in rows):
            legs = {row.how: row for row in rows if row.store == store_name}
            base, verified = legs["store read"], legs["store read + sha256"]
            total = base.mib_per_s * base.timing.seconds * MiB
            work = base.timing.cpu_client + base.timing.cpu_server + base.timing.cpu_s3
            fastest = max(base.timing.seconds, (work + total / rate) / cores)
            pulls = ", ".join(
                f"{how} {row.ratio / verified.ratio:.2f}"
                for how, row in legs.items()
                if how.startswith("pull")
            )
            print(
                f"  {store_name}: {base.timing.seconds / fastest:.2f} "
                f"(pull as a ratio of the store read + sha256: {pulls})"
            )
    finally:
        if s3 is not None:
            s3.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
