"""The object-storage interface shards and manifests go through."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class ObjectNotFound(KeyError):
    pass


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


class ObjectStore(Protocol):
    url: str

    def put_file(self, key: str, source: Path) -> ObjectInfo:
        """Upload ``source`` under ``key`` atomically: readers see all bytes or none."""
        ...

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo: ...

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

    def check(self) -> None:
        """Raise if the store cannot be written (used by /readyz)."""
        ...
