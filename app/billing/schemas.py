"""HTTP shapes for budgets and usage."""

from __future__ import annotations

import uuid
from datetime import date

from pydantic import BaseModel, ConfigDict, Field, StrictFloat

from app.billing.service import TeamBudget


class BudgetUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    monthly_budget_usd: StrictFloat | None = Field(
        gt=0,
        le=1e9,
        description="What the team may spend on LLM calls per calendar month (UTC); null: "
        "no cap. Lowering it never stops calls in flight: running jobs stop planning items "
        "that would pass it.",
    )


class BudgetRead(BaseModel):
    monthly_budget_usd: float | None
    month: str = Field(description="The month spend is counted for, YYYY-MM (UTC).")
    spent_usd: float = Field(description="Recorded calls this month: generation, judge and "
                             "scenario extraction.")  # fmt: skip
    reserved_usd: float = Field(
        description="The worst case of the items in flight in the team's running jobs."
    )
    left_usd: float | None = Field(description="cap - spent - reserved; null without a cap.")

    @classmethod
    def of(cls, budget: TeamBudget) -> BudgetRead:
        cap = budget.monthly_budget_usd
        return cls(
            monthly_budget_usd=cap,
            month=budget.month,
            spent_usd=budget.spent_usd,
            reserved_usd=budget.reserved_usd,
            left_usd=None if cap is None else cap - budget.spent_usd - budget.reserved_usd,
        )


class UsageRow(BaseModel):
    """One group's usage; the fields not grouped by are null."""

    day: date | None = None
    job_id: uuid.UUID | None = None
    purpose: str | None = Field(default=None, description="generate, judge or extract")
    provider: str | None = None
    model: str | None = None
    prices_version: str | None = Field(
        default=None, description="The price table the cost was computed with."
    )
    calls: int
    errors: int = Field(description="Failed calls (retried or not); they cost nothing.")
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class UsagePage(BaseModel):
    since: date
    until: date
    group_by: list[str]
    items: list[UsageRow]
    truncated: bool = Field(
        description="More than 1,000 groups: ask for a shorter range or fewer groupings "
        "(the total still counts them all)."
    )
    total: UsageRow
