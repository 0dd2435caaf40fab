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
