from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class EvalRead(BaseModel):
    id: uuid.UUID
    name: str | None
    model: str
    status: Literal["queued", "running", "succeeded", "failed"]
    methods: list[str]
    items: int = Field(description="Questions asked, each in every format of every method.")
    requests_total: int
    requests_done: int
    overlap: dict[str, Any] = Field(
        description="Word n-gram overlap of the questions with the texts the model may have "
        "been trained on: its training scenarios when given, else the bank's train split."
    )
    results: dict[str, Any] | None = Field(
        description="Per method: misaligned_rate (mean over formats) with standard_error and a "
        "per-item bootstrap interval_95, soft_score, per_format, per_topic, position bias, "
        "order consistency and positional_guessing (letter, chat), unparseable_rate (chat)."
    )
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class EvalPage(BaseModel):
    items: list[EvalRead]
