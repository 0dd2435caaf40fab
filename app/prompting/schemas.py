from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from app.jobs.spec import JobSpec
from app.prompting.service import MAX_PREVIEW_ITEMS


class SurfaceFormRead(BaseModel):
    id: str
    name: str
    has_title: bool
    typical_words: tuple[int, int]
    voices: list[str]
    conventions: list[str]
    instructions: str


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: JobSpec
    items: StrictInt = Field(default=3, ge=1, le=MAX_PREVIEW_ITEMS)


class PreviewItem(BaseModel):
    index: int
    plan: dict[str, Any]
    messages: list[dict[str, str]]
    prompt_sha256: str
    template_version: str


class PreviewResponse(BaseModel):
    items: list[PreviewItem]
