"""The object-storage interface shards and manifests go through."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class ObjectNotFound(KeyError):
    pass


class ObjectExists(FileExistsError):
    """A write to a key that already holds an object: stores never overwrite."""


def check_key(key: str) -> None:
    """Refuse keys a filesystem would fold or escape with (``..``, ``.``, empty parts)."""
    if any(part in ("..", ".", "") for part in key.split("/")):
        raise ValueError(f"invalid object key {key!r}")


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


class ObjectStore(Protocol):
    url: str

    def put_file(self, key: str, source: Path) -> ObjectInfo:
        """Upload ``source`` under a new ``key`` atomically: readers see all bytes or none.

        Raises ObjectExists if the key holds an object already: nothing is ever overwritten.
        """
        ...

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        """As put_file, from memory."""
        ...

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        """Write ``data`` under ``key`` only if no object is there, atomically; True if written.

        Of two processes racing to create the same key exactly one wins, and readers never
        see a partial object.
        """
        ...

    def get_bytes(self, key: str) -> bytes: ...

    def stat(self, key: str) -> ObjectInfo: ...

    def exists(self, key: str) -> bool: ...

    def iter_range(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        """Yield bytes ``start..end`` inclusive (``end=None``: to the end of the object)."""
        ...

    def presigned_url(self, key: str, expires_s: int) -> str | None:
        """A URL that reads the object without credentials for ``expires_s``; None where the
        store cannot make one (the local filesystem)."""
        ...

    def check(self) -> None:
        """Raise if the store cannot be written (used by /readyz)."""
        ...
