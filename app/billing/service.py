"""Budgets and usage: what a job and a team may still spend, and what they spent."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy.orm import Session

from app.billing import repository
from app.billing.budget import Cap, affordable
from app.billing.estimate import JUDGE_OVERHEAD_TOKENS
from app.jobs import repository as jobs_repository
from app.llm.provider import ProviderConfig
from app.models import Job

# Prompt tokens are estimated at 4 characters each; the reservation allows 3 (and the longest
# prompt of the sample it was measured on), so that it bounds what an item really costs.
RESERVE_PROMPT_FACTOR = 4 / 3


def reserve_per_item(
    provider: ProviderConfig,
    *,
    prompt_tokens: int,
    max_tokens: int,
    judge: ProviderConfig | None = None,
    judge_max_tokens: int = 0,
) -> float:
    """The most one item can cost: its prompt and every token it may write, and the judge
    reading all of them."""
    prompt = prompt_tokens * RESERVE_PROMPT_FACTOR
    worst = provider.cost_usd(round(prompt), max_tokens)
    if judge is not None:
        worst += judge.cost_usd(max_tokens + JUDGE_OVERHEAD_TOKENS, judge_max_tokens)
    return worst


def month_start(today: date) -> date:
    return today.replace(day=1)


def today() -> date:
    return datetime.now(UTC).date()


class TeamBusy(Exception):
    """Another transaction is planning against the team's budget: plan nothing this time."""


def job_caps(session: Session, job: Job, in_flight: int) -> list[Cap]:
    """The budgets that bound ``job``: its own and its team's this month, with what each has
    spent and holds in flight. Locks the team's row when it has a budget, so that jobs of one
    team plan against it one at a time (TeamBusy if another transaction holds it)."""
    caps = []
    cap = job.spec.get("budget_usd")
    if cap is not None:
        caps.append(
            Cap(
                "the job's budget",
                float(cap),
                repository.job_spent(session, job.id),
                in_flight * job.reserve_usd_per_item,
            )
        )
    team_cap = repository.monthly_budget(session, job.team_id)
    if team_cap is not None:
        if not jobs_repository.try_lock_team(session, job.team_id):
            raise TeamBusy(str(job.team_id))
        caps.append(team_month(session, job.team_id, team_cap))
    return caps


def team_month(session: Session, team_id: uuid.UUID, cap_usd: float) -> Cap:
    start = month_start(today())
    # Reserved first: an outcome recorded between the two reads then counts in both (it
    # may have been reserved and spent), never in neither.
    reserved = repository.team_reserved(session, team_id)
    return Cap(
        f"the team's budget for {start:%Y-%m}",
        cap_usd,
        repository.team_spent(session, team_id, start),
        reserved,
    )


def plannable(session: Session, job: Job, in_flight: int, wanted: int) -> tuple[int, Cap | None]:
    """How many of ``wanted`` more items the job's budgets allow, and the one that binds; none
    while another job of the team is planning (the next advance plans them)."""
    try:
        caps = job_caps(session, job, in_flight)
    except TeamBusy:
        return 0, None
    return affordable(wanted, job.reserve_usd_per_item, caps)


@dataclass(frozen=True)
class TeamBudget:
    monthly_budget_usd: float | None
    month: str
    spent_usd: float
    reserved_usd: float


def team_budget(session: Session, team_id: uuid.UUID) -> TeamBudget:
    start = month_start(today())
    return TeamBudget(
        monthly_budget_usd=repository.monthly_budget(session, team_id),
        month=f"{start:%Y-%m}",
        spent_usd=repository.team_spent(session, team_id, start),
        reserved_usd=repository.team_reserved(session, team_id),
    )


def spent_since(session: Session, team_id: uuid.UUID, day: date) -> float:
    """What the team's calls cost from ``day`` (UTC) on."""
    return repository.team_spent(session, team_id, day)


def set_team_budget(session: Session, team_id: uuid.UUID, usd: float | None) -> TeamBudget:
    repository.set_monthly_budget(session, team_id, usd)
    session.flush()
    return team_budget(session, team_id)
