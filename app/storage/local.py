"""Object store on the local filesystem (``file:///abs/path``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from app.core.errors import ConfigurationError
from app.storage.base import ObjectExists, ObjectInfo, ObjectNotFound, check_key


class LocalObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = root.as_uri()

    def _path(self, key: str) -> Path:
        # Split by hand: PurePosixPath would fold "a/./b" and "a//b" into "a/b", keys an
        # object store keeps apart, and the check below would never see them.
        check_key(key)
        return self.root.joinpath(*key.split("/"))

    @contextmanager
    def _staged(self, key: str, write: Callable[[BinaryIO], object]) -> Iterator[tuple[Path, Path]]:
        """A complete, fsynced temp file beside the target; the caller moves it into place."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
            yield Path(tmp), target
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _create(self, key: str, write: Callable[[BinaryIO], object]) -> ObjectInfo:
        with self._staged(key, write) as (tmp, target):
            try:
                # A hard link, unlike a rename, fails when the name exists: of two racing
                # writers exactly one wins, and the object appears complete or not at all.
                os.link(tmp, target)
            except FileExistsError as exc:
                raise ObjectExists(key) from exc
        return ObjectInfo(key=key, size=target.stat().st_size)

    def put_file(self, key: str, source: Path) -> ObjectInfo:
        def copy(out: BinaryIO) -> None:
            with source.open("rb") as src:
                shutil.copyfileobj(src, out)

        return self._create(key, copy)

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        return self._create(key, lambda out: out.write(data))

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        try:
            self._create(key, lambda out: out.write(data))
        except ObjectExists:
            return False
        return True

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc

    def stat(self, key: str) -> ObjectInfo:
        try:
            return ObjectInfo(key=key, size=self._path(key).stat().st_size)
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def iter_range(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        try:
            handle = self._path(key).open("rb")
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc
        with handle:
            handle.seek(start)
            remaining = None if end is None else end - start + 1
            while remaining is None or remaining > 0:
                block = handle.read(chunk_size if remaining is None else min(chunk_size, remaining))
                if not block:
                    return
                if remaining is not None:
                    remaining -= len(block)
                yield block

    def presigned_url(self, key: str, expires_s: int) -> str | None:  # noqa: ARG002
        return None

    def check(self) -> None:
        """Write and delete a probe file; raise ConfigurationError naming the fix."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".readyz-{os.getpid()}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot write to the object store {self.url} ({exc.strerror or exc}): point "
                "PRIORFORGE_STORAGE_URL at a directory this process can create and write"
            ) from exc
