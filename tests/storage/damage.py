"""Damage a stored object behind the store's back (stores never overwrite): what a disk
fault, an operator or another tool might do, and what publishing must detect."""

from __future__ import annotations

from typing import Any

from app.storage.local import LocalObjectStore


def overwrite(store: Any, key: str, data: bytes) -> None:
    if isinstance(store, LocalObjectStore):
        path = store.root.joinpath(*key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return
    store.client.put_object(Bucket=store.bucket, Key=store._key(key), Body=data)
