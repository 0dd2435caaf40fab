from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, model_validator

from app.core.text import NOT_BLANK
from app.teams.keys import KeyState, Role
from app.teams.service import MAX_NAME, KeyView

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
