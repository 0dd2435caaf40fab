from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, model_validator

from app.core.text import NOT_BLANK
from app.teams.keys import KeyState, Role
from app.teams.operators import MAX_ACTIVE_JOBS, MAX_DOCUMENTS_PER_JOB, TeamView
from app.teams.service import MAX_NAME, TEAM_NAME, KeyView

MAX_EXPIRES_IN_DAYS = 3650
MAX_GRACE_SECONDS = 30 * 86400


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME, pattern=NOT_BLANK)] | None = None
    expires_at: AwareDatetime | None = Field(
        default=None, description="When the key stops working (ISO-8601 with an offset)."
    )
    expires_in_days: Annotated[StrictInt, Field(ge=1, le=MAX_EXPIRES_IN_DAYS)] | None = Field(
        default=None, description="Or: days from now."
    )

    @model_validator(mode="after")
    def _one_expiry(self) -> Self:
        if self.expires_at is not None and self.expires_in_days is not None:
            raise ValueError("give expires_at or expires_in_days, not both")
        return self


class KeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: StrictInt = Field(
        default=0,
        ge=0,
        le=MAX_GRACE_SECONDS,
        description="How long the old key keeps working; 0 revokes it at once.",
    )


class KeyRead(BaseModel):
    """A key without its secret: the prefix is its public id."""

    prefix: str
    team: str
    role: Role
    name: str | None
    state: KeyState
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    current: bool = Field(description="True for the key that authenticated this request.")
    note: str | None = None

    @classmethod
    def of(cls, view: KeyView, *, current: bool = False, note: str | None = None) -> KeyRead:
        key = view.key
        return cls(
            prefix=key.prefix,
            team=view.team,
            role=Role(key.role),
            name=key.name,
            state=view.state,
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
            current=current,
            note=note,
        )


class KeyCreated(BaseModel):
    key: KeyRead
    token: str = Field(description="The key itself, shown this once: only its hash is stored.")


class KeyRotated(KeyCreated):
    replaced: KeyRead


class KeyPage(BaseModel):
    items: list[KeyRead]


class TeamQuotas(BaseModel):
    """A team's own quotas; null: the deployment's (PRIORFORGE_TEAM_MAX_...)."""

    model_config = ConfigDict(extra="forbid")

    max_active_jobs: Annotated[StrictInt, Field(ge=1, le=MAX_ACTIVE_JOBS)] | None = Field(
        default=None, description="Jobs queued or running at once; one more is a 429."
    )
    max_documents_per_job: Annotated[StrictInt, Field(ge=1, le=MAX_DOCUMENTS_PER_JOB)] | None = (
        Field(default=None, description="Documents one job may ask for; more is a 409.")
    )


class TeamRead(BaseModel):
    name: str
    created_at: datetime
    monthly_budget_usd: float | None = Field(description="Set by the team's admins.")
    spent_this_month_usd: float
    active_jobs: int
    max_active_jobs: int = Field(description="In effect: the team's own, or the deployment's.")
    max_documents_per_job: int = Field(description="In effect.")
    quotas: TeamQuotas = Field(description="The team's own (null: the deployment's).")

    @classmethod
    def of(cls, view: TeamView) -> TeamRead:
        team = view.team
        return cls(
            name=team.name,
            created_at=team.created_at,
            monthly_budget_usd=team.monthly_budget_usd,
            spent_this_month_usd=round(view.spent_usd, 6),
            active_jobs=view.active_jobs,
            max_active_jobs=view.max_active_jobs,
            max_documents_per_job=view.max_documents_per_job,
            quotas=TeamQuotas(
                max_active_jobs=team.max_active_jobs,
                max_documents_per_job=team.max_documents_per_job,
            ),
        )


class TeamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=TEAM_NAME.pattern, description="a-z, 0-9, '.', '_', '-'; 1-64.")


class TeamCreated(BaseModel):
    team: TeamRead
    admin_key: KeyCreated = Field(description="The team's first admin key, shown this once.")


class TeamPage(BaseModel):
    items: list[TeamRead]
