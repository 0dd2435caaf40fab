from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class DatasetRead(BaseModel):
    name: str
    owner: str = Field(description="The team that owns it (yours, unless shared with you).")
    shared: bool = Field(description="Another team's, shared with yours: read it with ?owner=.")
    created_at: datetime


class ShareCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team: str = Field(min_length=1, max_length=100, description="The team to share it with.")


class ShareRead(BaseModel):
    team: str
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
