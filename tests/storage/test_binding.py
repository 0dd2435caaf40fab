"""A database is bound to one object store: a process pointing at another is refused."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, insert, select
from sqlalchemy.orm import sessionmaker

from app.core import migrate
from app.core.errors import ConfigurationError
from app.models import Deployment, Shard
from app.models.base import utcnow
from app.storage import open_store
from app.storage.local import LocalObjectStore
from app.storage.marker import MARKER_KEY, StoreIdentity
from app.storage.service import bind_store
from tests.dedup import factory
from tests.storage.damage import overwrite


@pytest.fixture
def engine(scratch_database_url: str) -> Iterator[Engine]:
    """A migrated database no store is bound to yet (the shared test database may be)."""
    migrate.upgrade(scratch_database_url)
    engine = create_engine(scratch_database_url, pool_size=10)
    yield engine
    engine.dispose()


def sessions(engine: Engine) -> Any:
    return sessionmaker(bind=engine, expire_on_commit=False).begin


def local(path: Path) -> LocalObjectStore:
    return LocalObjectStore(path)


def marker(store: LocalObjectStore) -> StoreIdentity:
    return StoreIdentity.from_bytes(store.get_bytes(MARKER_KEY))


def bound_id(engine: Engine) -> str:
    with sessions(engine)() as session:
        value = session.scalar(select(Deployment.value).where(Deployment.key == "store"))
    assert value is not None
    return str(value["store_id"])


def test_the_first_store_is_bound_and_another_is_refused_naming_both(
    engine: Engine, tmp_path: Path
) -> None:
    first = local(tmp_path / "machine-a" / "objects")
    identity = bind_store(first, sessions(engine))
    assert marker(first) == identity
    assert bound_id(engine) == identity.store_id
    assert identity.url == first.url
    assert bind_store(local(tmp_path / "machine-a" / "objects"), sessions(engine)) == identity

    # The same path on another machine: an empty directory.
    other = local(tmp_path / "machine-b" / "objects")
    with pytest.raises(ConfigurationError) as refused:
        bind_store(other, sessions(engine))
    assert other.url in refused.value.detail
    assert first.url in refused.value.detail
    assert MARKER_KEY in refused.value.detail
    assert "PRIORFORGE_STORAGE_URL" in refused.value.detail
    assert not other.exists(MARKER_KEY), "a refused process must not mark the store"

    # A store that belongs to another deployment.
    foreign = StoreIdentity.new("file:///elsewhere/objects", utcnow())
    assert other.put_bytes_if_absent(MARKER_KEY, foreign.to_bytes())
    with pytest.raises(ConfigurationError) as refused_again:
        bind_store(other, sessions(engine))
    assert foreign.store_id in refused_again.value.detail
    assert identity.store_id in refused_again.value.detail
    assert first.url in refused_again.value.detail


def test_concurrent_first_opens_agree_on_one_store_id(engine: Engine, tmp_path: Path) -> None:
    root = tmp_path / "shared" / "objects"
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    results: list[StoreIdentity | BaseException] = []

    def open_it() -> None:
        barrier.wait()
        try:
            results.append(bind_store(local(root), sessions(engine)))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == threads_count
    assert all(isinstance(r, StoreIdentity) for r in results), [str(r) for r in results]
    assert len({r.store_id for r in results if isinstance(r, StoreIdentity)}) == 1
    assert marker(local(root)).store_id == bound_id(engine)


def test_a_fresh_database_adopts_the_store_marker(engine: Engine, tmp_path: Path) -> None:
    store = local(tmp_path / "objects")
    existing = StoreIdentity.new(store.url, utcnow())
    store.put_bytes_if_absent(MARKER_KEY, existing.to_bytes())
    assert bind_store(store, sessions(engine)) == existing
    assert bound_id(engine) == existing.store_id


def test_a_database_with_shards_is_not_first_bound_to_a_store_without_them(
    engine: Engine, tmp_path: Path
) -> None:
    with sessions(engine)() as session:
        seeded = factory.dataset(session, items=1)
        key = f"teams/{seeded.team_id}/datasets/near-dups/shards/{seeded.job_id}-00000-ab.jsonl.zst"
        session.execute(
            insert(Shard).values(
                id=uuid.uuid4(),
                dataset_id=seeded.dataset_id,
                job_id=seeded.job_id,
                seq=0,
                object_key=key,
                sha256="ab" * 32,
                bytes=3,
                records=1,
                committed=True,
            )
        )
    empty = local(tmp_path / "empty")
    with pytest.raises(ConfigurationError) as refused:
        bind_store(empty, sessions(engine))
    assert "has published shards" in refused.value.detail
    assert empty.url in refused.value.detail
    with sessions(engine)() as session:
        assert session.scalar(select(Deployment.key)) is None

    holding = local(tmp_path / "holding")
    overwrite(holding, key, b"zst")
    assert bind_store(holding, sessions(engine)).store_id == bound_id(engine)


def test_put_bytes_if_absent_has_exactly_one_winner(tmp_path: Path) -> None:
    store = local(tmp_path / "objects")
    barrier = threading.Barrier(6)
    won: list[int] = []

    def put(n: int) -> None:
        barrier.wait()
        if store.put_bytes_if_absent("a/marker.json", f"writer {n}".encode()):
            won.append(n)

    threads = [threading.Thread(target=put, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(won) == 1
    assert store.get_bytes("a/marker.json") == f"writer {won[0]}".encode()
    assert not store.put_bytes_if_absent("a/marker.json", b"late")
    assert [p.name for p in (tmp_path / "objects" / "a").iterdir()] == ["marker.json"]


@pytest.mark.parametrize("url", ["file://relative/objects", "file:objects", "file://host/abs"])
def test_a_file_url_must_be_absolute(url: str) -> None:
    with pytest.raises(ConfigurationError, match="file:///absolute/path"):
        open_store(url)


@pytest.mark.parametrize(
    "key", ["../outside", "a/../../outside", "/etc/passwd", "a/./b", "a//b", ""]
)
def test_a_local_store_refuses_keys_that_leave_or_bend_its_root(tmp_path: Path, key: str) -> None:
    (tmp_path / "outside").write_bytes(b"secret")
    store = local(tmp_path / "objects")
    for call in (store.get_bytes, store.stat, store.exists):
        with pytest.raises(ValueError, match="invalid object key"):
            call(key)
    with pytest.raises(ValueError, match="invalid object key"):
        store.put_bytes(key, b"overwritten")
    assert (tmp_path / "outside").read_bytes() == b"secret"
