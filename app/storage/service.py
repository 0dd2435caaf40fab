"""Binding a database to one object store, so processes cannot split a deployment in two.

Two processes that share a database but not a store (the same ``file:///path`` on two
machines, a typo in one bucket name) would each publish shards the other cannot serve. The
first process to open a store records its identity in both places: a marker object in the
store and a row in the database. Every later process must find the two agreeing.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from app.core.db import Sessions
from app.core.errors import ConfigurationError
from app.models.base import utcnow
from app.storage import repository
from app.storage.base import ObjectNotFound, ObjectStore
from app.storage.marker import MARKER_KEY, InvalidMarker, StoreIdentity

log = logging.getLogger(__name__)


# A database that has published shards is bound only to a store holding one of its newest.
RECENT_SHARDS_CHECKED = 5

FIX = (
    "every API and worker process must use the one store this database publishes to: point "
    "PRIORFORGE_STORAGE_URL at it (the same shared filesystem or bucket everywhere), or "
    "PRIORFORGE_DATABASE_URL at this store's database"
)


def bind_store(store: ObjectStore, sessions: Sessions) -> StoreIdentity:
    """Check that ``store`` is the store this database publishes to; bind them the first time.

    Creating the binding is safe against processes starting at once: the database row is
    inserted first (``ON CONFLICT DO NOTHING``) and stays locked until its transaction
    commits, after the marker is written; a racing insert waits for that commit, then reads
    the winner's row and finds its marker.
    """
    with sessions() as session:
        bound = _bound(session)
    if bound is not None:
        _require_marker(store, bound)
        return bound
    found = _read_marker(store)
    with sessions() as session:
        _require_recent_shards(session, store)
        proposed = found or StoreIdentity.new(store.url, utcnow())
        if not repository.insert_store_binding(session, proposed.to_json()):
            bound = _bound(session)
            assert bound is not None, "a conflicting binding row must exist"
            _require_marker(store, bound)
            return bound
        if found is None:
            store.put_bytes_if_absent(MARKER_KEY, proposed.to_bytes())
        # A process bound to another database may have written its marker meanwhile: then
        # this raises and the row is rolled back.
        _require_marker(store, proposed)
    log.info("database bound to object store %s (%s)", proposed.store_id, store.url)
    return proposed


def _bound(session: Session) -> StoreIdentity | None:
    value = repository.get_store_binding(session)
    if value is None:
        return None
    try:
        return StoreIdentity.from_json(value)
    except InvalidMarker as exc:
        raise ConfigurationError(
            f"the database's record of its object store is unreadable ({exc})"
        ) from exc


def _read_marker(store: ObjectStore) -> StoreIdentity | None:
    try:
        data = store.get_bytes(MARKER_KEY)
    except ObjectNotFound:
        return None
    try:
        return StoreIdentity.from_bytes(data)
    except InvalidMarker as exc:
        raise ConfigurationError(
            f"{MARKER_KEY} in the object store {store.url} is not a PriorForge store marker "
            f"({exc}): restore it, or point PRIORFORGE_STORAGE_URL at the right store"
        ) from exc


def _require_marker(store: ObjectStore, bound: StoreIdentity) -> None:
    marker = _read_marker(store)
    if marker is None:
        raise ConfigurationError(
            f"this process's PRIORFORGE_STORAGE_URL ({store.url}) is not the object store this "
            f"database publishes to ({bound.url}, store id {bound.store_id}): it has no "
            f"{MARKER_KEY}; {FIX}"
        )
    if marker.store_id != bound.store_id:
        raise ConfigurationError(
            f"this process's PRIORFORGE_STORAGE_URL ({store.url}) is another object store (id "
            f"{marker.store_id}, first opened at {marker.url}) than the one this database "
            f"publishes to ({bound.url}, store id {bound.store_id}); {FIX}"
        )


def _require_recent_shards(session: Session, store: ObjectStore) -> None:
    """A database that published shards before stores were bound adopts only their store."""
    keys = repository.recent_shard_keys(session, RECENT_SHARDS_CHECKED)
    if keys and not any(store.exists(key) for key in keys):
        raise ConfigurationError(
            f"this database has published shards, but none of its newest is in the object "
            f"store at this process's PRIORFORGE_STORAGE_URL ({store.url}), e.g. {keys[0]}; "
            "point PRIORFORGE_STORAGE_URL at the store they were written to"
        )
