from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

ExportFormat = Literal["megatron", "mds", "npy"]


class TokenizerRead(BaseModel):
    name: str
    sha256: str
    bytes: int
    vocab_size: int
    created_at: datetime


class TokenizerPage(BaseModel):
    items: list[TokenizerRead]


class ExportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokenizer: str = Field(
        pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="A tokenizer the team uploaded."
    )
    formats: list[ExportFormat] = Field(
        default=["megatron", "mds", "npy"],
        min_length=1,
        max_length=3,
        description="megatron: Megatron-LM/GPT-NeoX .bin/.idx; mds: MosaicML streaming; "
        "npy: OLMo/dolma token arrays.",
    )
    eos: str = Field(
        min_length=1,
        max_length=200,
        description="The token that ends every document (appended), e.g. <|endoftext|>.",
    )
    mds_text: StrictBool = Field(default=False, description="Add a text column to the MDS samples.")


class ExportRead(BaseModel):
    id: uuid.UUID
    dataset: str
    version: int
    status: Literal["queued", "running", "succeeded", "failed"]
    tokenizer: str
    formats: list[str]
    eos: str
    mds_text: bool
    documents_total: int
    documents_done: int
    tokens: int
    index_sha256: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ExportPage(BaseModel):
    items: list[ExportRead]
