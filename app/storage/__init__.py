"""Object storage: ``open_store(url)`` picks the implementation from the URL scheme."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from app.core.errors import ConfigurationError
from app.storage.base import ObjectExists, ObjectInfo, ObjectNotFound, ObjectStore
from app.storage.local import LocalObjectStore

__all__ = [
    "ObjectExists",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "check_storage_url",
    "open_store",
    "put_content_addressed",
]


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
    if parsed.scheme == "s3":
        if not parsed.netloc or parsed.query or parsed.fragment:
            raise ConfigurationError(
                f"PRIORFORGE_STORAGE_URL {url!r} is not an S3 URL: use s3://bucket/prefix"
            )
        return
    raise ConfigurationError(
        f"unsupported PRIORFORGE_STORAGE_URL {url!r}: use file:///absolute/path or "
        "s3://bucket/prefix"
    )


def put_content_addressed(store: ObjectStore, key: str, source: Path | bytes) -> ObjectInfo:
    """Upload bytes under a key that names their sha256; a retry finds its own bytes there.

    Stores never overwrite, so an earlier attempt's object is kept: one of the right size is
    those very bytes (the key is their hash); one of another size is damage, and is named.
    """
    size = source.stat().st_size if isinstance(source, Path) else len(source)
    try:
        if isinstance(source, Path):
            return store.put_file(key, source)
        return store.put_bytes(key, source)
    except ObjectExists:
        found = store.stat(key)
        if found.size != size:
            raise ObjectExists(
                f"{key} is in the object store with {found.size} bytes, not the {size} bytes "
                "its name's sha256 stands for: the store is damaged"
            ) from None
        return found


def open_store(
    url: str, *, endpoint_url: str | None = None, region: str | None = None
) -> ObjectStore:
    """The store at ``url``; S3 settings apply to ``s3://`` URLs only."""
    check_storage_url(url)
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        from app.storage.s3 import S3ObjectStore  # boto3 comes with the s3 extra

        return S3ObjectStore(
            parsed.netloc, unquote(parsed.path), endpoint_url=endpoint_url, region=region
        )
    return LocalObjectStore(Path(unquote(parsed.path)))
