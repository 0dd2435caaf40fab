"""Object storage: ``open_store(url)`` picks the implementation from the URL scheme."""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from app.storage.base import ObjectInfo, ObjectNotFound, ObjectStore
from app.storage.local import LocalObjectStore

__all__ = ["ObjectInfo", "ObjectNotFound", "ObjectStore", "open_store"]


def open_store(url: str) -> ObjectStore:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        from pathlib import Path

        return LocalObjectStore(Path(unquote(parsed.path)))
    raise ValueError(
        f"unsupported PRIORFORGE_STORAGE_URL {url!r}: use file:///absolute/path "
        "(s3:// arrives with the 's3' extra)"
    )
