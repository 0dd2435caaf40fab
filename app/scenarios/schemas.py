from __future__ import annotations

from pydantic import BaseModel

from app.scenarios.bank import Scenario


class ScenarioRead(Scenario):
    origin: str


class ScenarioPage(BaseModel):
    items: list[ScenarioRead]
    next_cursor: str | None


class ScenarioImportResult(BaseModel):
    imported: int
    ids: list[str]
