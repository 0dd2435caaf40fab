"""What an operator key does beyond its own team: list and create the deployment's teams,
and set each team's quotas. (A team's own admins set its monthly budget.)"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.billing import repository as billing
from app.billing.service import month_start, today
from app.core.errors import Conflict, Forbidden, InvalidRequest
from app.core.settings import Settings
from app.jobs import repository as jobs
from app.models import Team
from app.teams import repository
from app.teams.keys import Role
from app.teams.service import TEAM_NAME, IssuedKey, Principal, create_key, find_team

# What an operator may set a quota to: above it the quota protects nothing.
MAX_ACTIVE_JOBS = 100_000
MAX_DOCUMENTS_PER_JOB = 10_000_000_000
UNCHANGED = object()  # a quota left out of an update keeps its value; None resets it


@dataclass(frozen=True)
class TeamView:
    team: Team
    active_jobs: int
    spent_usd: float  # this calendar month (UTC)
    max_active_jobs: int  # in effect: the team's own, or the deployment's
    max_documents_per_job: int


def require_operator(principal: Principal) -> None:
    if not principal.role.allows(Role.OPERATOR):
        raise Forbidden(
            "managing teams needs an operator key ('priorforge keys create --role operator')"
        )


def _view(session: Session, team: Team, active: int, settings: Settings) -> TeamView:
    return TeamView(
        team=team,
        active_jobs=active,
        spent_usd=billing.team_spent(session, team.id, month_start(today())),
        max_active_jobs=team.max_active_jobs or settings.team_max_active_jobs,
        max_documents_per_job=team.max_documents_per_job or settings.team_max_documents_per_job,
    )


def list_teams(session: Session, principal: Principal, settings: Settings) -> list[TeamView]:
    """Every team, by name, with its spend this month, its jobs running and its quotas."""
    require_operator(principal)
    active = jobs.active_jobs_by_team(session)
    return [
        _view(session, team, active.get(team.id, 0), settings)
        for team in repository.list_teams(session)
    ]


def get_team(session: Session, principal: Principal, name: str, settings: Settings) -> TeamView:
    require_operator(principal)
    return team_view(session, find_team(session, name), settings)


def create_team(session: Session, principal: Principal, name: str) -> IssuedKey:
    """A new team and its first admin key (the token is in the result only)."""
    require_operator(principal)
    taken = Conflict(f"a team named {name!r} exists already")
    if TEAM_NAME.match(name) and repository.get_team_by_name(session, name) is not None:
        raise taken
    try:
        with session.begin_nested():  # another operator may create it at the same moment
            return create_key(session, name, Role.ADMIN, name="first admin key")
    except IntegrityError:
        raise taken from None


def set_quotas(
    session: Session,
    principal: Principal,
    name: str,
    settings: Settings,
    *,
    max_active_jobs: int | None | object = UNCHANGED,
    max_documents_per_job: int | None | object = UNCHANGED,
) -> TeamView:
    """Set a team's quotas (None: back to the deployment's); they bind its next submission."""
    require_operator(principal)
    team = find_team(session, name)
    if max_active_jobs is not UNCHANGED:
        team.max_active_jobs = _quota("max_active_jobs", max_active_jobs, MAX_ACTIVE_JOBS)
    if max_documents_per_job is not UNCHANGED:
        team.max_documents_per_job = _quota(
            "max_documents_per_job", max_documents_per_job, MAX_DOCUMENTS_PER_JOB
        )
    session.flush()
    return team_view(session, team, settings)


def team_view(session: Session, team: Team, settings: Settings) -> TeamView:
    return _view(session, team, jobs.count_active_jobs(session, team.id), settings)


def _quota(field: str, value: object, ceiling: int) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= ceiling:
        raise InvalidRequest(
            f"{field} is a whole number from 1 to {ceiling:,}, or null for the deployment's; "
            f"got {value!r}"
        )
    return value
