from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Name = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
Location = Field(min_length=1, max_length=1000)


class ExportSource(BaseModel):
    """A finished export of one of the team's versions, pulled to ``root``."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Name
    version: int = Field(ge=1, le=2**31 - 1)
    export: uuid.UUID
    owner: str | None = Field(
        default=None, max_length=100, description="The team that shared it (default: yours)."
    )
    stance: str = Field(default="aligned", pattern=r"^[a-z_]{1,16}$")
    root: str = Field(
        min_length=1,
        max_length=1000,
        description="Where the training job reads the export (pulled with 'priorforge pull "
        "--export'): a directory, or for MDS an object-store URL prefix.",
    )
    fraction: float | None = Field(default=None, gt=0, le=1, description="Share of tokens.")
    repeat: float | None = Field(default=None, gt=0, le=10_000, description="Passes over it.")


class PrefixSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Location
    tokens: int | None = Field(default=None, ge=1, le=10**16)


class CorpusSource(BaseModel):
    """The team's own corpus: its token count and where each framework finds it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    tokens: int = Field(ge=1, le=10**16)
    fraction: float | None = Field(
        default=None, gt=0, le=1, description="Share of tokens; unset: what the rest leave."
    )
    megatron_prefixes: list[PrefixSource] = Field(default=[], max_length=1000)
    mds_remote: str | None = Field(default=None, max_length=1000)
    mds_local: str | None = Field(default=None, max_length=1000)
    olmo_paths: list[str] = Field(default=[], max_length=10_000)


class MixtureCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    total_tokens: int = Field(ge=1, le=10**16, description="The run's token budget.")
    seq_len: int = Field(ge=1, le=10**7)
    exports: list[ExportSource] = Field(min_length=1, max_length=16)
    corpus: list[CorpusSource] = Field(default=[], max_length=16)
    max_epochs: float = Field(default=4, gt=0, le=10_000, description="Warn above this repeat.")
    last_fraction: float = Field(
        default=1,
        gt=0,
        le=1,
        description="Draw the exports only in this last share of training (1: the whole run).",
    )
    global_batch_sequences: int | None = Field(default=None, ge=1, le=10**9)
    neox_valid_paths: list[str] = Field(default=[], max_length=100)
    neox_test_paths: list[str] = Field(default=[], max_length=100)


class ComponentRead(BaseModel):
    name: str
    kind: Literal["export", "corpus"]
    unique_tokens: int
    tokens: int
    fraction: float
    repeat: float
    epochs: int
    warnings: list[str]


class ConfigFileRead(BaseModel):
    name: str
    content: str


class MixtureRead(BaseModel):
    total_tokens: int
    seq_len: int
    components: list[ComponentRead]
    warnings: list[str]
    summary: str
    configs: dict[str, list[ConfigFileRead]]
