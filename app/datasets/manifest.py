"""Dataset-version manifests and Dolma-style shard records. Pure."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

SOURCE = "priorforge"


def dolma_record(
    *,
    document_id: str,
    text: str,
    added: datetime,
    created: datetime,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": document_id,
        "text": text,
        "source": SOURCE,
        "added": added.isoformat(),
        "created": created.isoformat(),
        "metadata": metadata,
    }


@dataclass(frozen=True)
class ManifestFile:
    path: str
    bytes: int
    sha256: str
    records: int
    job: str

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name

    def entry(self) -> dict[str, Any]:
        """The file as the manifest lists it."""
        return {
            "path": self.path,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "records": self.records,
        }


def build_manifest(
    *, dataset: str, version: int, created: datetime, files: list[ManifestFile]
) -> bytes:
    body = {
        "dataset": dataset,
        "version": version,
        "created": created.isoformat(),
        "format": "dolma-jsonl-zstd",
        "records": sum(f.records for f in files),
        "bytes": sum(f.bytes for f in files),
        "files": [f.entry() for f in files],
        "lineage": {"jobs": sorted({f.job for f in files})},
    }
    return json.dumps(body, indent=2, sort_keys=False).encode() + b"\n"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
