"""Object storage: ``open_store(url)`` picks the implementation from the URL scheme."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from app.core.errors import ConfigurationError
from app.storage.base import ObjectInfo, ObjectNotFound, ObjectStore
from app.storage.local import LocalObjectStore

__all__ = ["ObjectInfo", "ObjectNotFound", "ObjectStore", "check_storage_url", "open_store"]


def check_storage_url(url: str) -> None:
    """Raise ConfigurationError, naming the fix, unless ``url`` is a store we can open."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        # file://rel/path parses "rel" as a host: each process would resolve the rest
        # against its own working directory, so only an absolute path is accepted.
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise ConfigurationError(
                f"PRIORFORGE_STORAGE_URL {url!r} is not an absolute file URL"
                + (f" ({parsed.netloc!r} was read as a host name)" if parsed.netloc else "")
                + ": use file:///absolute/path (three slashes), a directory every process shares"
            )
        return
    raise ConfigurationError(
        f"unsupported PRIORFORGE_STORAGE_URL {url!r}: use file:///absolute/path "
        "(s3:// arrives with the 's3' extra)"
    )


def open_store(url: str) -> ObjectStore:
    check_storage_url(url)
    return LocalObjectStore(Path(unquote(urlparse(url).path)))
