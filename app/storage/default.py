"""The configured object store, opened once per process."""

from __future__ import annotations

from functools import lru_cache

from app.core.settings import get_settings
from app.storage import ObjectStore, open_store


@lru_cache(maxsize=1)
def get_store() -> ObjectStore:
    return open_store(get_settings().effective_storage_url)
