"""S3 clients compared: boto3 (what ``app/storage/s3.py`` uses) against obstore (Rust).

Both talk to moto's S3 server on loopback and do what the store does: a create-only PUT of a
64 MiB file with its SHA-256 (boto3 through ``S3ObjectStore``; obstore ``put(mode="create")``
with ``checksum_algorithm="sha256"``), a 128 MiB multipart upload in 32 MiB parts, 8 at a
time, ranged GETs of 1 MiB and 32 MiB, a whole GET of 64 MiB, eight 8 MiB ranges in 8
threads, HEAD, and presigning a GET URL (no request). Each operation runs a few times in a
round, rounds alternate the clients, and the best round is kept. moto is Python: where its
CPU time is near the wall time it is the bottleneck, and the client's own CPU seconds
(``time.process_time()`` of this process) are the figure that separates the clients. moto
also reads a whole object, under the object's lock, for every GET of a range of it: ranged
GETs of a large object, and parallel ones most, are slow there and fast on S3.

What the store relies on is then checked on the wire, through a recording proxy: a
create-only PUT (``If-None-Match: *``) refused the second time, its ``x-amz-checksum-sha256``,
a presigned GET, a multipart upload's SHA-256 (named at create, sent with every part) and
create-only complete, and the abort of an upload whose parts are refused.

    python bench/s3_client.py [--rounds 3] [--no-multipart]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import os
import random
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

try:
    import obstore
    from obstore.exceptions import AlreadyExistsError
    from obstore.store import S3Store
except ImportError:  # a measuring tool's own dependency, not the service's
    sys.exit("bench/s3_client.py compares boto3 with obstore: pip install obstore (0.12) first")

from app.storage import ObjectExists  # noqa: E402
from app.storage.s3 import (  # noqa: E402
    MULTIPART_THRESHOLD,
    PART_SIZE,
    UPLOAD_THREADS,
    S3ObjectStore,
)
from bench.pull import cpu_seconds  # noqa: E402
from tests.s3_server import ENVIRONMENT, S3TestServer  # noqa: E402

MiB = 1 << 20
PREFIX = "bench"
OBJECT = "objects/read-me.bin"  # 64 MiB, read by both clients
PART = PART_SIZE  # obstore's multipart parts and concurrency, as the store's
PARALLEL = UPLOAD_THREADS


@dataclass
class Best:
    """The best round of one operation on one client: seconds per call and CPU seconds."""

    per_call: float = float("inf")
    client_cpu: float = 0.0
    server_cpu: float = 0.0


class Boto3:
    name = "boto3"

    def __init__(self, bucket: str, endpoint: str) -> None:
        self.store = S3ObjectStore(bucket, PREFIX, endpoint_url=endpoint)
        self.client = self.store.client
        self.bucket = bucket

    def put_create(self, key: str, source: Path) -> None:
        self.store.put_file(key, source)  # one PUT: If-None-Match *, x-amz-checksum-sha256

    def put_multipart(self, key: str, source: Path) -> None:
        # Above MULTIPART_THRESHOLD put_file sends 32 MiB parts, 8 at a time, each with its
        # SHA-256, and completes create-only.
        assert source.stat().st_size > MULTIPART_THRESHOLD
        self.store.put_file(key, source)

    def get(self, key: str, start: int | None = None, length: int | None = None) -> int:
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": f"{PREFIX}/{key}"}
        if start is not None and length is not None:
            request["Range"] = f"bytes={start}-{start + length - 1}"
        return len(self.client.get_object(**request)["Body"].read())

    def head(self, key: str) -> int:
        return self.store.stat(key).size

    def presign(self, key: str) -> str:
        return self.store.presigned_url(key, 900) or ""


class Obstore:
    name = "obstore"

    def __init__(self, bucket: str, endpoint: str) -> None:
        self.store = S3Store(
            bucket,
            prefix=PREFIX,
            endpoint=endpoint,
            region=ENVIRONMENT["AWS_DEFAULT_REGION"],
            access_key_id=ENVIRONMENT["AWS_ACCESS_KEY_ID"],
            secret_access_key=ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
            checksum_algorithm="sha256",
            client_options={"allow_http": True},
        )

    def put_create(self, key: str, source: Path) -> None:
        try:
            obstore.put(self.store, key, source, mode="create")  # one PUT, read into memory
        except AlreadyExistsError as exc:
            raise ObjectExists(key) from exc

    def put_multipart(self, key: str, source: Path) -> None:
        # No create-only mode here: obstore turns any mode but "overwrite" into one PUT.
        obstore.put(
            self.store,
            key,
            source,
            use_multipart=True,
            chunk_size=PART,
            max_concurrency=PARALLEL,
        )

    def get(self, key: str, start: int | None = None, length: int | None = None) -> int:
        if start is not None and length is not None:
            return len(obstore.get_range(self.store, key, start=start, length=length))
        return len(obstore.get(self.store, key).bytes())

    def head(self, key: str) -> int:
        return int(obstore.head(self.store, key)["size"])

    def presign(self, key: str) -> str:
        return str(obstore.sign(self.store, "GET", key, timedelta(seconds=900)))


Client = Boto3 | Obstore


def parallel_ranges(client: Client) -> None:
    """Eight 8 MiB ranges of the 64 MiB object, one per thread (the pull's pattern)."""
    with ThreadPoolExecutor(PARALLEL) as pool:
        sizes = list(pool.map(lambda i: client.get(OBJECT, i * 8 * MiB, 8 * MiB), range(PARALLEL)))
    assert sum(sizes) == 64 * MiB


def measure(
    best: Best,
    calls: int,
    run: Callable[[int], object],
    moto: S3TestServer,
    after: Callable[[], None],
) -> None:
    """Run ``calls`` calls; keep the figures if this round beats the best so far."""
    pid = moto.process.pid if moto.process else 0
    cpu, server = time.process_time(), cpu_seconds(pid)
    started = time.perf_counter()
    for call in range(calls):
        run(call)
    seconds = time.perf_counter() - started
    if seconds / calls < best.per_call:
        best.per_call = seconds / calls
        best.client_cpu = (time.process_time() - cpu) / calls
        best.server_cpu = (cpu_seconds(pid) - server) / calls
    after()


class Recorder:
    """A recording proxy in front of moto: the headers each client sends, and a switch that
    refuses one key's multipart parts (400, not retried) to see what a client does then."""

    HEADERS = (
        "if-none-match",
        "x-amz-checksum-sha256",
        "x-amz-checksum-algorithm",
        "x-amz-sdk-checksum-algorithm",
    )

    def __init__(self, upstream: str) -> None:
        self.upstream = urllib.parse.urlsplit(upstream).netloc
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.refuse_parts_of = ""
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002, ARG002
                return

            def relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                wanted = {k: v for k, v in self.headers.items() if k.lower() in Recorder.HEADERS}
                recorder.seen.append((self.command, self.path, wanted))
                refuse = recorder.refuse_parts_of
                if refuse and refuse in self.path and "partNumber=" in self.path:
                    self.answer(400, {}, b"<Error><Code>InvalidArgument</Code></Error>")
                    return
                upstream = http.client.HTTPConnection(recorder.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                upstream.close()
                kept = {
                    k: v
                    for k, v in response.getheaders()
                    if k.lower() not in ("connection", "transfer-encoding", "content-length")
                }
                if self.command == "HEAD":
                    kept["Content-Length"] = response.getheader("Content-Length") or "0"
                self.answer(response.status, kept, data)

            def answer(self, code: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(code)
                for name, value in headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    try:
                        self.wfile.write(data)
                    except (BrokenPipeError, ConnectionResetError):
                        # A client that gave up on an upload hangs up without reading this.
                        self.close_connection = True

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def requests(self, key: str) -> list[tuple[str, str, dict[str, str]]]:
        return [(m, p, h) for m, p, h in self.seen if key in p]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def features(bucket: str, moto: S3TestServer, small: Path, source: Path) -> list[str]:
    """What each client sends for what the store relies on, recorded on the wire."""
    recorder = Recorder(moto.endpoint)
    lines = []
    try:
        for client in (Boto3(bucket, recorder.endpoint), Obstore(bucket, recorder.endpoint)):
            key = f"features/{client.name}/{uuid.uuid4().hex}"
            client.put_create(key, small)
            try:
                client.put_create(key, small)
                refused = "no, it overwrote"
            except ObjectExists:
                refused = "yes"
            puts = [h for m, _p, h in recorder.requests(key) if m == "PUT"]
            expected = base64.b64encode(hashlib.sha256(small.read_bytes()).digest()).decode()
            with urllib.request.urlopen(client.presign(key), timeout=10) as response:
                signed = response.read() == small.read_bytes()
            lines.append(
                f"{client.name:<8} PUT: If-None-Match {_header(puts[0], 'if-none-match')}, "
                f"second PUT refused: {refused}; x-amz-checksum-sha256 matches: "
                f"{_header(puts[0], 'x-amz-checksum-sha256') == expected}; "
                f"presigned GET works: {signed}"
            )

            key = f"features/{client.name}/multipart-{uuid.uuid4().hex}"
            client.put_multipart(key, source)
            sent = recorder.requests(key)
            create = next((h for m, p, h in sent if m == "POST" and "?uploads" in p), {})
            parts = [h for m, p, h in sent if m == "PUT" and "partNumber=" in p]
            complete = next((h for m, p, h in sent if m == "POST" and "uploadId=" in p), {})
            with_sha = sum(1 for h in parts if _header(h, "x-amz-checksum-sha256") != "-")
            lines.append(
                f"{client.name:<8} multipart: create names SHA256: "
                f"{_header(create, 'x-amz-checksum-algorithm')}; parts with SHA-256 "
                f"{with_sha}/{len(parts)}; complete If-None-Match "
                f"{_header(complete, 'if-none-match')}"
            )

            key = f"features/{client.name}/refused-{uuid.uuid4().hex}"
            recorder.refuse_parts_of = key
            try:
                client.put_multipart(key, source)
                outcome = "the upload succeeded?"
            except Exception as exc:  # noqa: BLE001 - any failure will do; we look at the wire
                outcome = type(exc).__name__
            recorder.refuse_parts_of = ""
            aborted = any(m == "DELETE" and "uploadId=" in p for m, p, _h in recorder.requests(key))
            lines.append(
                f"{client.name:<8} multipart whose parts are refused: {outcome}, "
                f"aborted (DELETE ?uploadId): {aborted}"
            )
    finally:
        recorder.stop()
    return lines


def _header(headers: dict[str, str], name: str) -> str:
    return next((v for k, v in headers.items() if k.lower() == name), "-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best is kept")
    parser.add_argument("--no-multipart", action="store_true", help="skip the 128 MiB upload")
    args = parser.parse_args()

    os.environ.update(ENVIRONMENT)
    with tempfile.TemporaryDirectory(prefix="priorforge-bench-s3-") as tmp:
        folder = Path(tmp)
        rng = random.Random(7)
        medium, large, small = folder / "64.bin", folder / "128.bin", folder / "small.bin"
        medium.write_bytes(rng.randbytes(64 * MiB))
        large.write_bytes(rng.randbytes(128 * MiB))
        small.write_bytes(rng.randbytes(4096))
        moto = S3TestServer(folder / "moto.log").start()
        try:
            bucket = moto.new_bucket()
            endpoint = moto.endpoint
            boto, obs = Boto3(bucket, endpoint), Obstore(bucket, endpoint)
            boto.put_create(OBJECT, medium)
            print(
                f"moto {endpoint}, {os.cpu_count()} CPUs, load average "
                f"{os.getloadavg()[0]:.2f}; best of {args.rounds} rounds"
            )

            written: list[str] = []

            def put(client: Client, source: Path, how: str) -> Callable[[int], object]:
                def run(_i: int) -> None:
                    key = f"puts/{client.name}/{uuid.uuid4().hex}"
                    written.append(key)
                    if how == "create":
                        client.put_create(key, source)
                    else:
                        client.put_multipart(key, source)

                return run

            def forget() -> None:
                """Drop what a round wrote (keys are fresh each call): moto keeps it in memory."""
                for key in written:
                    boto.client.delete_object(Bucket=bucket, Key=f"{PREFIX}/{key}")
                written.clear()

            operations: list[tuple[str, int, int, Callable[[Client], Callable[[int], object]]]] = [
                ("PUT 64 MiB create-only", 64 * MiB, 2, lambda c: put(c, medium, "create")),
                ("GET 1 MiB range", MiB, 30, lambda c: lambda i: c.get(OBJECT, i * MiB, MiB)),
                (
                    "GET 32 MiB range",
                    32 * MiB,
                    4,
                    lambda c: lambda i: c.get(OBJECT, (i % 2) * 32 * MiB, 32 * MiB),
                ),
                ("GET 64 MiB whole", 64 * MiB, 2, lambda c: lambda _i: c.get(OBJECT)),
                ("GET 8 x 8 MiB, 8 threads", 64 * MiB, 2, lambda c: lambda _i: parallel_ranges(c)),
                ("HEAD", 0, 100, lambda c: lambda _i: c.head(OBJECT)),
                ("presign GET (no request)", 0, 500, lambda c: lambda _i: c.presign(OBJECT)),
            ]
            if not args.no_multipart:
                operations.insert(
                    1,
                    ("PUT 128 MiB multipart", 128 * MiB, 1, lambda c: put(c, large, "multipart")),
                )
            results: dict[tuple[str, str], Best] = {}
            for _round in range(args.rounds):
                for label, _size, calls, make in operations:
                    for client in (boto, obs) if _round % 2 == 0 else (obs, boto):
                        best = results.setdefault((label, client.name), Best())
                        measure(best, calls, make(client), moto, forget)

            print()
            print(
                "| operation | boto3 ms | obstore ms | wall ratio | boto3 client CPU ms | "
                "obstore client CPU ms | CPU ratio | moto CPU ms (boto3 / obstore) | "
                "MiB/s (boto3 / obstore) |"
            )
            print("|---|---|---|---|---|---|---|---|---|")
            for label, size, _calls, _make in operations:
                b, o = results[(label, "boto3")], results[(label, "obstore")]
                rates = (
                    f"{size / MiB / b.per_call:.0f} / {size / MiB / o.per_call:.0f}"
                    if size
                    else "-"
                )
                print(
                    f"| {label} | {b.per_call * 1e3:.2f} | {o.per_call * 1e3:.2f} | "
                    f"{b.per_call / o.per_call:.2f} | {b.client_cpu * 1e3:.2f} | "
                    f"{o.client_cpu * 1e3:.2f} | "
                    f"{b.client_cpu / max(o.client_cpu, 1e-6):.2f} | "
                    f"{b.server_cpu * 1e3:.1f} / {o.server_cpu * 1e3:.1f} | {rates} |"
                )
            print("ratios: boto3 / obstore (above 1: obstore is faster or cheaper)")
            print()
            for line in features(bucket, moto, small, large):
                print(line)
        finally:
            moto.stop()


if __name__ == "__main__":
    main()
