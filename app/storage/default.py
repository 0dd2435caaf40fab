"""The configured object store, opened and checked against the database once per process."""

from __future__ import annotations

from functools import lru_cache

from app.core.db import session_scope
from app.core.settings import get_settings
from app.storage import ObjectStore, open_store
from app.storage.service import bind_store


@lru_cache(maxsize=1)
def get_store() -> ObjectStore:
    """Raises ConfigurationError (not cached: the next call tries again) when the store is not
    configured, or is not the store this database publishes to."""
    settings = get_settings()
    store = open_store(
        settings.effective_storage_url,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
    )
    bind_store(store, session_scope)
    return store
