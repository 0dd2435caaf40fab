"""One suite for every object store: the local filesystem and S3 (moto's server on loopback).

What publishing relies on: objects appear whole or not at all, nothing is ever overwritten,
missing keys are told apart from other failures, ranges are exact, and a store that cannot
be used says how to fix it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.core.errors import ConfigurationError
from app.storage import ObjectExists, ObjectNotFound, ObjectStore, open_store
from tests.s3_server import S3TestServer

MakeStore = Callable[[], ObjectStore]


@pytest.fixture(params=["local", "s3"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> MakeStore:
    """A factory of empty stores of one kind (a new directory or bucket each call)."""
    if request.param == "local":
        counter = iter(range(1000))
        return lambda: open_store((tmp_path / f"objects-{next(counter)}").as_uri())
    server: S3TestServer = request.getfixturevalue("s3")
    return lambda: open_store(
        f"s3://{server.new_bucket()}/some/prefix", endpoint_url=server.endpoint
    )


@pytest.fixture
def store(make_store: MakeStore) -> ObjectStore:
    return make_store()


def test_objects_round_trip_with_exact_sizes_and_ranges(store: ObjectStore) -> None:
    data = os.urandom(3000)
    assert store.put_bytes("a/b/c.bin", data).size == 3000
    assert store.get_bytes("a/b/c.bin") == data
    assert store.stat("a/b/c.bin").size == 3000
    assert store.exists("a/b/c.bin")
    assert b"".join(store.iter_range("a/b/c.bin")) == data
    assert b"".join(store.iter_range("a/b/c.bin", 10, 19)) == data[10:20]
    assert b"".join(store.iter_range("a/b/c.bin", 2990)) == data[2990:]
    assert b"".join(store.iter_range("a/b/c.bin", 0, 0)) == data[:1]
    chunks = list(store.iter_range("a/b/c.bin", 0, 2999, chunk_size=1000))
    assert b"".join(chunks) == data
    assert max(len(c) for c in chunks) <= 1000


def test_an_empty_object_is_stored_and_read(store: ObjectStore) -> None:
    store.put_bytes("empty", b"")
    assert store.stat("empty").size == 0
    assert store.get_bytes("empty") == b""
    assert b"".join(store.iter_range("empty")) == b""


def test_missing_objects_are_told_apart(store: ObjectStore) -> None:
    assert not store.exists("nothing/here")
    with pytest.raises(ObjectNotFound):
        store.get_bytes("nothing/here")
    with pytest.raises(ObjectNotFound):
        store.stat("nothing/here")
    with pytest.raises(ObjectNotFound):
        b"".join(store.iter_range("nothing/here"))


def test_an_upload_to_an_existing_key_is_refused(store: ObjectStore, tmp_path: Path) -> None:
    store.put_bytes("shard", b"first")
    with pytest.raises(ObjectExists):
        store.put_bytes("shard", b"second")
    other = tmp_path / "other"
    other.write_bytes(b"third")
    with pytest.raises(ObjectExists):
        store.put_file("shard", other)
    assert not store.put_bytes_if_absent("shard", b"fourth")
    assert store.get_bytes("shard") == b"first"


def test_of_racing_creators_exactly_one_wins(store: ObjectStore) -> None:
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def create(n: int) -> None:
        barrier.wait()
        results.append(store.put_bytes_if_absent("marker", f"writer {n}".encode()))

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
    assert store.get_bytes("marker").startswith(b"writer ")


@pytest.mark.parametrize("key", ["../escape", "a/../b", "a//b", "./a", "a/", ""])
def test_keys_that_a_filesystem_would_fold_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError, match="invalid object key"):
        store.put_bytes(key, b"x")


def test_a_file_goes_up_whole(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "shard.bin"
    data = os.urandom(200_000)
    source.write_bytes(data)
    assert store.put_file("dir/shard.bin", source).size == len(data)
    assert (
        hashlib.sha256(store.get_bytes("dir/shard.bin")).digest() == hashlib.sha256(data).digest()
    )


def test_check_passes_on_a_usable_store(store: ObjectStore) -> None:
    store.check()
    store.check()  # the probe leaves nothing that makes a second check fail


def test_presigned_urls_read_without_credentials_on_s3_only(store: ObjectStore) -> None:
    store.put_bytes("file.bin", b"presigned bytes")
    url = store.presigned_url("file.bin", 60)
    if store.url.startswith("file:"):
        assert url is None
        return
    assert url is not None
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == b"presigned bytes"


# S3 only: multipart, checksums and configuration errors.


@pytest.fixture
def s3_store(s3: S3TestServer) -> Any:
    return open_store(f"s3://{s3.new_bucket()}/p", endpoint_url=s3.endpoint)


def test_big_files_go_up_in_parts_and_read_back_whole(
    s3_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.storage import s3 as s3_module

    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD", 6 * 1024 * 1024)
    monkeypatch.setattr(s3_module, "PART_SIZE", 5 * 1024 * 1024)
    parts: list[int] = []
    s3_store.client.meta.events.register(
        "provide-client-params.s3.UploadPart",
        lambda params, **_: parts.append(params["PartNumber"]),
    )
    source = tmp_path / "big.bin"
    data = os.urandom(12 * 1024 * 1024 + 17)
    source.write_bytes(data)
    s3_store.put_file("big.bin", source)
    assert sorted(parts) == [1, 2, 3]
    assert s3_store.get_bytes("big.bin") == data
    with pytest.raises(ObjectExists):
        s3_store.put_file("big.bin", source)


def test_a_failed_multipart_upload_leaves_no_object_and_no_parts(
    s3_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.storage import s3 as s3_module

    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD", 6 * 1024 * 1024)
    monkeypatch.setattr(s3_module, "PART_SIZE", 5 * 1024 * 1024)

    def fail_part_two(params: dict[str, Any], **_: Any) -> None:
        if params["PartNumber"] == 2:
            raise ConnectionError("network gone")

    s3_store.client.meta.events.register("provide-client-params.s3.UploadPart", fail_part_two)
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(11 * 1024 * 1024))
    with pytest.raises(ConnectionError):
        s3_store.put_file("big.bin", source)
    assert not s3_store.exists("big.bin")
    uploads = s3_store.client.list_multipart_uploads(Bucket=s3_store.bucket)
    assert uploads.get("Uploads", []) == []


def test_every_upload_carries_the_sha256_of_its_bytes(s3_store: Any) -> None:
    sent: list[str] = []
    s3_store.client.meta.events.register(
        "before-send.s3.PutObject",
        lambda request, **_: sent.append(request.headers.get("x-amz-checksum-sha256", b"")),
    )
    s3_store.put_bytes("doc", b"checked bytes")
    expected = base64.b64encode(hashlib.sha256(b"checked bytes").digest())
    assert [s if isinstance(s, bytes) else s.encode() for s in sent] == [expected]


def test_a_missing_bucket_is_named_with_the_fix(s3: S3TestServer) -> None:
    store = open_store("s3://no-such-bucket-here/p", endpoint_url=s3.endpoint)
    with pytest.raises(ConfigurationError, match="'no-such-bucket-here' .* does not exist"):
        store.check()


def test_an_unreachable_endpoint_is_named_with_the_fix() -> None:
    store = open_store("s3://bucket/p", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(ConfigurationError, match="check PRIORFORGE_S3_ENDPOINT_URL"):
        store.check()


def test_an_unwritable_directory_is_named_with_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    store = open_store((blocker / "objects").as_uri())
    with pytest.raises(ConfigurationError, match="PRIORFORGE_STORAGE_URL at a directory"):
        store.check()


@pytest.mark.parametrize("url", ["s3://", "s3:///prefix", "s3://bucket/p?versionId=1"])
def test_malformed_s3_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="use s3://bucket/prefix"):
        open_store(url)


def test_a_content_addressed_retry_finds_its_own_bytes_and_damage_is_named(
    store: ObjectStore,
) -> None:
    from app.storage import put_content_addressed

    put_content_addressed(store, "shards/abc.zst", b"payload")
    assert put_content_addressed(store, "shards/abc.zst", b"payload").size == 7  # a retry
    with pytest.raises(ObjectExists, match="not the 4 bytes .* the store is damaged"):
        put_content_addressed(store, "shards/abc.zst", b"four")
    assert store.get_bytes("shards/abc.zst") == b"payload"
