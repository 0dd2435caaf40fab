"""Pull a dataset version: parallel ranged downloads, resume, sha256 verification.

Standard library only, so a training job can import it without any of the server's
dependencies. The manifest is the list of files: nothing is ever listed, neither on the API
nor in the bucket behind it. A file is written as numbered ``.part`` pieces (one per range),
each resumed where it stopped; the first piece is hashed as it arrives. Once all are there
they are joined, and the file is renamed into place only if the sha256 matches the
manifest. ``manifest.json`` is written last: a destination that has it is complete.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
CHUNK = 32 * 1024 * 1024
BLOCK = 1 << 20
RETRIES = 4


class PullError(Exception):
    """A pull that cannot complete; the message says what to do."""


@dataclass(frozen=True)
class RemoteFile:
    path: str
    bytes: int
    sha256: str


@dataclass
class PullReport:
    dataset: str
    version: int
    files: int
    bytes_total: int
    files_downloaded: int = 0
    files_already_here: int = 0
    bytes_missing: int = 0
    bytes_downloaded: int = 0
    seconds: float = 0.0


def parse_target(target: str) -> tuple[str, int | None]:
    """``name``, ``name@latest`` or ``name@3`` → (name, version or None for the latest)."""
    name, _, version = target.partition("@")
    if not name:
        raise PullError(f"{target!r}: give DATASET or DATASET@VERSION, e.g. aligned-news@3")
    if version in ("", "latest"):
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise PullError(f"{target!r}: the version after '@' is a number from 1, or 'latest'")
    return name, int(version)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects are followed by hand: a presigned URL must not receive our API key."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # noqa: ARG002
        return None


class Client:
    def __init__(self, base_url: str, api_key: str | None, *, timeout: float = 60) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise PullError(f"API URL {base_url!r}: give http(s)://host:port (PRIORFORGE_API_URL)")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirects())

    def open(
        self,
        path: str,
        headers: dict[str, str] | None = None,
        method: str = "GET",
        data: bytes | None = None,
    ) -> http.client.HTTPResponse:
        """The response to a request on the API, following one redirect without the key."""
        request = urllib.request.Request(f"{self.base_url}{path}", method=method, data=data)
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            response: http.client.HTTPResponse = self._opener.open(request, timeout=self.timeout)
            return response
        except urllib.error.HTTPError as exc:
            location = exc.headers.get("Location")
            if exc.code in (301, 302, 303, 307, 308) and location:
                exc.close()
                redirected = urllib.request.Request(location, method=method)
                for name, value in (headers or {}).items():
                    redirected.add_header(name, value)
                return self._opener.open(redirected, timeout=self.timeout)  # type: ignore[no-any-return]
            raise PullError(_problem(exc, path)) from None

    def get_json(self, path: str) -> Any:
        with self.open(path) as response:
            return json.loads(response.read())

    def post_json(self, path: str, body: Any) -> Any:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        with self.open(path, headers, method="POST", data=data) as response:
            return json.loads(response.read())

    def manifest(
        self,
        dataset: str,
        version: int | None,
        export: str | None = None,
        owner: str | None = None,
    ) -> tuple[int, bytes]:
        """The version's number and its manifest (or its export's index: the same list of
        files), checked against the sha256 the API names."""
        quoted = urllib.parse.quote(dataset, safe="")
        query = _owner_query(owner)
        if version is None:
            versions = self.get_json(f"/v1/datasets/{quoted}/versions{query}")
            if not versions:
                raise PullError(
                    f"dataset {dataset!r} has no versions yet: snapshot it first "
                    f"(POST /v1/datasets/{dataset}/versions)"
                )
            version = int(versions[-1]["version"])
        listing = f"exports/{urllib.parse.quote(export, safe='')}/index" if export else "manifest"
        with self.open(f"/v1/datasets/{quoted}/versions/{version}/{listing}{query}") as response:
            body = response.read()
            expected = response.headers.get("X-Content-SHA256")
        if expected and hashlib.sha256(body).hexdigest() != expected:
            raise PullError(f"the manifest of {dataset}@{version} does not match its sha256")
        return version, body


def _owner_query(owner: str | None, *more: str) -> str:
    """The query string of a request: ?owner= for a dataset another team shared, and more."""
    parts = ([f"owner={urllib.parse.quote(owner, safe='')}"] if owner else []) + list(more)
    return f"?{'&'.join(parts)}" if parts else ""


def _problem(exc: urllib.error.HTTPError, path: str) -> str:
    try:
        problem = json.loads(exc.read())
        detail = problem.get("detail")
        errors = problem.get("errors") or []
        if errors:
            detail = f"{detail}: " + "; ".join(
                f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg', e)}"
                if isinstance(e, dict)
                else str(e)
                for e in errors[:5]
            )
    except (ValueError, AttributeError, OSError):
        detail = None
    hint = {401: " (set PRIORFORGE_API_KEY or --api-key)", 403: " (the key lacks the role)"}
    return f"{exc.code} on {path}: {detail or exc.reason}{hint.get(exc.code, '')}"


def files_of(manifest: bytes) -> list[RemoteFile]:
    """The manifest's files, refusing any path that would leave the destination."""
    try:
        files = [
            RemoteFile(str(entry["path"]), int(entry["bytes"]), str(entry["sha256"]))
            for entry in json.loads(manifest)["files"]
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise PullError(f"the manifest is not a PriorForge manifest ({exc!r})") from None
    for file in files:
        # Split by hand: PurePosixPath folds "a//b" and "a/./b", which a server should not send.
        if any(part in ("..", ".", "") for part in file.path.split("/")):
            raise PullError(f"the manifest names an unsafe path {file.path!r}; refusing to pull")
    return files


def _ranges(size: int, chunk: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk, size) - 1) for start in range(0, size, chunk)] or [(0, -1)]


def _part(target: Path, index: int) -> Path:
    return target.with_name(f"{target.name}.{index:05d}.part")


def sha256_file(path: Path) -> str:
    return str(_sha256_of(path).hexdigest())


class _Pull:
    def __init__(
        self,
        client: Client,
        url: str,
        dest: Path,
        *,
        chunk: int,
        redirect: bool,
        progress: Callable[[int], None],
        owner: str | None = None,
    ) -> None:
        self.client, self.url, self.dest = client, url, dest
        self.owner = owner
        self.chunk, self.redirect, self.progress = chunk, redirect, progress
        self.downloaded = 0
        self.lock = threading.Lock()
        self.heads: dict[str, Any] = {}  # path → sha256 of its first piece, taken on arrival
        self.buffers = _Buffers()

    def fetch_range(self, file: RemoteFile, index: int, start: int, end: int) -> None:
        """Bring piece ``index`` (bytes start..end) to its full length, resuming a partial one.

        The first piece is hashed as it arrives (what is already on disk first), so a file of
        one piece is never read back: its digest is ready when its last byte lands.
        """
        part = _part(self.dest / file.path, index)
        need = end - start + 1
        failure: Exception | None = None
        digest: Any = None  # the first piece's sha256, in step with its bytes on disk
        for attempt in range(RETRIES + 2):
            have = part.stat().st_size if part.exists() else 0
            if have > need:
                part.unlink()
                have = 0
            if index == 0 and digest is None:
                digest = _sha256_of(part) if have else hashlib.sha256()
            if have == need:
                self._settle(file, index, digest)
                return
            if attempt == RETRIES + 1:
                break
            if attempt:
                time.sleep(min(0.2 * 2**attempt, 5))
            try:
                self._append(file, part, start + have, end, digest)
            except (OSError, http.client.HTTPException) as exc:
                failure = exc
                digest = None  # a block may be on disk and not in the digest: take it again
        raise PullError(
            f"{file.path}: bytes {start}-{end} did not arrive after {RETRIES + 1} tries "
            f"({failure or 'the server sent too few bytes'}); run the same pull again to resume"
        )

    def _settle(self, file: RemoteFile, index: int, digest: Any) -> None:
        if index == 0:
            with self.lock:
                self.heads[file.path] = digest

    def _append(
        self, file: RemoteFile, part: Path, start: int, end: int, digest: Any | None
    ) -> None:
        query = _owner_query(self.owner, *(["redirect=1"] if self.redirect else []))
        headers = {"Range": f"bytes={start}-{end}", "If-Range": f'"{file.sha256}"'}
        path = f"{self.url}/files/{urllib.parse.quote(file.path)}{query}"
        with self.client.open(path, headers) as response:
            if response.status != 206 and not (response.status == 200 and start == 0):
                raise PullError(
                    f"{file.path}: the server answered {response.status} to a range request: "
                    "the file changed under this version, which a version never does"
                )
            with part.open("ab", buffering=0) as out:
                # read(n) gathers n bytes (readinto stops at what one recv brought).
                while block := response.read(BLOCK):
                    out.write(block)
                    if digest is not None:
                        digest.update(block)  # releases the GIL: hashing overlaps the transfer
                    with self.lock:
                        self.downloaded += len(block)
                    self.progress(len(block))

    def join(self, file: RemoteFile, pieces: int) -> None:
        """Join the pieces, check the sha256, and move the file into place atomically.

        The first piece becomes the file, its digest already taken as it arrived; later
        pieces are hashed and appended to it, so a one-piece file is never copied or read
        back. Nothing is fsynced: a copy cut short by a crash is found by the sha256 every
        pull takes of the files already in place, and fetched again.
        """
        target = self.dest / file.path
        joined = target.with_name(f"{target.name}.joining")
        _part(target, 0).touch()  # an empty file has no bytes to fetch, so no piece yet
        os.replace(_part(target, 0), joined)
        with self.lock:
            digest = self.heads.pop(file.path, None)
        if digest is None:
            digest = _sha256_of(joined)
        if pieces > 1:
            buffer = self.buffers.get()
            with joined.open("ab", buffering=0) as out:
                for index in range(1, pieces):
                    with _part(target, index).open("rb", buffering=0) as piece:
                        while count := piece.readinto(buffer):
                            digest.update(buffer[:count])
                            out.write(buffer[:count])
            for index in range(1, pieces):
                _part(target, index).unlink()
        if digest.hexdigest() != file.sha256:
            joined.unlink()
            raise PullError(
                f"{file.path}: sha256 {digest.hexdigest()} does not match the manifest's "
                f"{file.sha256}; the copy was deleted. The server's copy may be damaged: "
                "tell the dataset's owner"
            )
        os.replace(joined, target)


class _Buffers(threading.local):
    """One reusable read buffer per thread: a block read allocates nothing."""

    def get(self) -> memoryview:
        view: memoryview | None = getattr(self, "view", None)
        if view is None:
            view = self.view = memoryview(bytearray(BLOCK))
        return view


def _sha256_of(path: Path) -> Any:
    """A sha256 object fed with the file's bytes (to continue with more)."""
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as handle:
        buffer = memoryview(bytearray(BLOCK))
        while count := handle.readinto(buffer):
            digest.update(buffer[:count])
    return digest


def _already_here(path: Path, file: RemoteFile) -> bool:
    return path.is_file() and path.stat().st_size == file.bytes and sha256_file(path) == file.sha256


def pull(
    client: Client,
    dataset: str,
    version: int | None,
    dest: Path,
    *,
    workers: int = 8,
    chunk: int = CHUNK,
    redirect: bool = False,
    export: str | None = None,
    owner: str | None = None,
    progress: Callable[[int], None] = lambda _n: None,
    on_plan: Callable[[PullReport], None] = lambda _r: None,
) -> PullReport:
    """Bring ``dataset@version`` (None: the latest), or one of its exports, into ``dest``,
    verified byte for byte."""
    started = time.monotonic()
    number, manifest = client.manifest(dataset, version, export, owner)
    files = files_of(manifest)
    report = PullReport(dataset, number, len(files), sum(f.bytes for f in files))
    dest.mkdir(parents=True, exist_ok=True)
    quoted = urllib.parse.quote(dataset, safe="")
    base = f"/v1/datasets/{quoted}/versions/{number}"
    if export:
        base += f"/exports/{urllib.parse.quote(export, safe='')}"
    job = _Pull(
        client,
        base,
        dest,
        chunk=chunk,
        redirect=redirect,
        progress=progress,
        owner=owner,
    )
    missing = []
    for file in files:
        target = dest / file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if _already_here(target, file):
            report.files_already_here += 1
            continue
        missing.append(file)
    report.bytes_missing = sum(f.bytes for f in missing)
    on_plan(report)
    # Each file is joined and checked by the thread that lands its last piece, while the
    # other threads go on downloading: hashing and fsync overlap the transfer.
    left = {file.path: len(_ranges(file.bytes, chunk)) for file in missing}
    lock = threading.Lock()

    def fetch(file: RemoteFile, index: int, start: int, end: int) -> None:
        job.fetch_range(file, index, start, end)
        with lock:
            left[file.path] -= 1
            last = left[file.path] == 0
        if last:
            job.join(file, len(_ranges(file.bytes, chunk)))

    with ThreadPoolExecutor(max(1, workers)) as pool:
        futures = [
            pool.submit(fetch, file, index, start, end)
            for file in missing
            for index, (start, end) in enumerate(_ranges(file.bytes, chunk))
        ]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in done:
            future.result()  # raise the first failure; finished pieces stay for a resume
    report.files_downloaded = len(missing)
    _write_atomically(dest / MANIFEST, manifest)
    report.bytes_downloaded = job.downloaded
    report.seconds = time.monotonic() - started
    return report


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class Mismatch:
    path: str
    problem: str


def verify(dest: Path) -> tuple[int, list[Mismatch]]:
    """Re-check a pulled copy against its manifest: (files checked, what is wrong)."""
    try:
        manifest = (dest / MANIFEST).read_bytes()
    except OSError as exc:
        raise PullError(
            f"{dest / MANIFEST}: {exc.strerror or exc}; pull the version into {dest} first"
        ) from None
    problems = []
    files = files_of(manifest)
    for file in files:
        problem = _check(dest / file.path, file)
        if problem:
            problems.append(Mismatch(file.path, problem))
    return len(files), problems


def _check(path: Path, file: RemoteFile) -> str | None:
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != file.bytes:
        return f"{size} bytes, the manifest says {file.bytes}"
    found = sha256_file(path)
    return None if found == file.sha256 else f"sha256 {found}, the manifest says {file.sha256}"


def iter_files(dest: Path) -> Iterator[Path]:
    """The pulled files, in manifest order (for readers that take a list of paths)."""
    for file in files_of((dest / MANIFEST).read_bytes()):
        yield dest / file.path
