"""Prompt previews: the exact messages a worker would send, without calling a model."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.generation.context import JobContext
from app.jobs.planner import PlannedItem
from app.jobs.spec import JobSpec
from app.prompting.render import RenderedPrompt
from app.teams.service import Principal

MAX_PREVIEW_ITEMS = 100


@dataclass(frozen=True)
class Preview:
    item: PlannedItem
    prompt: RenderedPrompt


def preview(session: Session, principal: Principal, spec: JobSpec, count: int) -> list[Preview]:
    context = JobContext.for_spec(spec, principal.team_id, session)
    return [Preview(item, context.render(item)) for item in context.plan(0, count)]
