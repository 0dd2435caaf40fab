from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class DatasetRead(BaseModel):
    name: str
    created_at: datetime


class DatasetVersionRead(BaseModel):
    dataset: str
    version: int
    manifest_sha256: str
    files: int
    records: int
    bytes: int
    created_at: datetime


class PositionRange(BaseModel):
    start: int
    end: int
    documents: int


class VersionDiffRead(BaseModel):
    dataset: str
    since: int
    version: int
    files_added: list[str]
    files_removed: list[str]
    documents_added: dict[str, PositionRange]
    documents_removed: dict[str, PositionRange]
