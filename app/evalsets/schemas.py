from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class EvalSetRead(BaseModel):
    name: str
    items: int
    sha256: str
    created_at: datetime
    too_short: int | None = None


class EvalSetPage(BaseModel):
    items: list[EvalSetRead]
