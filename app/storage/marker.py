"""The store marker: which store an object store is, written once at its root. Pure."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MARKER_KEY = "priorforge-store.json"


class InvalidMarker(ValueError):
    pass


@dataclass(frozen=True)
class StoreIdentity:
    """A store's random id, and when and at which URL it was first opened.

    The same identity lives in the store (the marker object) and in the database it is
    bound to; the URL is for messages only, since one store may be mounted at several.
    """

    store_id: str
    url: str
    created_at: str

    @classmethod
    def new(cls, url: str, now: datetime) -> StoreIdentity:
        return cls(store_id=str(uuid.uuid4()), url=url, created_at=now.isoformat())

    def to_json(self) -> dict[str, str]:
        return {"store_id": self.store_id, "url": self.url, "created_at": self.created_at}

    @classmethod
    def from_json(cls, value: Any) -> StoreIdentity:
        if not isinstance(value, dict) or not all(
            isinstance(value.get(field), str) for field in ("store_id", "url", "created_at")
        ):
            raise InvalidMarker("expected an object with store_id, url and created_at strings")
        return cls(store_id=value["store_id"], url=value["url"], created_at=value["created_at"])

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), indent=2).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> StoreIdentity:
        try:
            return cls.from_json(json.loads(data))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidMarker(str(exc)) from exc
