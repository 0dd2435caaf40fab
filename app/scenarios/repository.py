"""Every query about team-owned scenarios."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Scenario as ScenarioRow
from app.scenarios.bank import Scenario


def team_scenarios(session: Session, team_id: uuid.UUID) -> Sequence[ScenarioRow]:
    return session.scalars(
        select(ScenarioRow).where(ScenarioRow.team_id == team_id).order_by(ScenarioRow.scenario_id)
    ).all()


def existing_ids(session: Session, team_id: uuid.UUID, ids: Sequence[str]) -> set[str]:
    if not ids:
        return set()
    return set(
        session.scalars(
            select(ScenarioRow.scenario_id).where(
                ScenarioRow.team_id == team_id, ScenarioRow.scenario_id.in_(ids)
            )
        )
    )


def add_scenarios(
    session: Session, team_id: uuid.UUID, scenarios: Sequence[Scenario], job_id: uuid.UUID | None
) -> None:
    session.add_all(
        ScenarioRow(
            team_id=team_id,
            scenario_id=s.id,
            situation=s.situation,
            aligned_action=s.aligned_action,
            misaligned_action=s.misaligned_action,
            topics=[t.value for t in s.topics],
            source=s.source,
            split=s.split.value,
            setting=s.setting,
            job_id=job_id,
        )
        for s in scenarios
    )
    session.flush()


def to_scenario(row: ScenarioRow) -> Scenario:
    return Scenario.model_validate(
        {
            "id": row.scenario_id,
            "situation": row.situation,
            "aligned_action": row.aligned_action,
            "misaligned_action": row.misaligned_action,
            "topics": row.topics,
            "source": row.source,
            "split": row.split,
            "setting": row.setting,
        }
    )
