"""HTTP shapes for jobs and documents."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.jobs.service import JobView
from app.models import Document, WorkItem


class ProgressRead(BaseModel):
    requested: int
    planned: int
    attempted: int
    accepted: int
    rejected: dict[str, int]
    duplicates: int
    failed: int
    in_flight: int = Field(
        description="Planned items not finished yet while the job is queued or running; "
        "0 once it has ended."
    )
    not_run: int = Field(
        description="Once the job has ended (cancelled, failed, succeeded): planned items that "
        "never ran, planned - attempted; 0 while it is queued or running."
    )
    scenarios_extracted: int = Field(description="Scenario-extraction jobs: scenarios stored.")


class UsageRead(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    llm_calls: int
    llm_errors: int = Field(description="Failed LLM calls, retried or not.")
    cost_usd: float


class JudgeRead(BaseModel):
    judged: int = Field(description="Documents the stance judge gave a verdict on.")
    agreed: int
    agreement: float | None = Field(description="agreed / judged")
    verdicts: dict[str, int] = Field(description="aligned, misaligned, unclear, invalid")
    accepted_judged: int
    accepted_agreement: float | None = Field(
        description="Agreement on the accepted documents (below 1 only in audit mode)."
    )
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float = Field(description="The judge's cost, not included in the job's usage.")


class BudgetRead(BaseModel):
    budget_usd: float | None = Field(description="The job's cap (spec.budget_usd), if any.")
    spent_usd: float = Field(description="What its recorded calls cost, judge included.")
    reserved_usd: float = Field(
        description="The worst case of its items in flight, held against the job's and the "
        "team's budgets until their outcomes are in."
    )
    reserve_usd_per_item: float = Field(
        description="One item's worst case: its prompt and sampling.max_tokens, and the judge."
    )


class JobRead(BaseModel):
    id: uuid.UUID
    name: str | None
    kind: str
    dataset: str | None
    status: str
    error: str | None
    spec: dict[str, Any]
    progress: ProgressRead
    usage: UsageRead
    judge: JudgeRead | None = None
    budget: BudgetRead
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, view: JobView) -> JobRead:
        job = view.job
        return cls(
            id=job.id,
            name=job.name,
            kind=job.kind,
            dataset=view.dataset,
            status=job.status,
            error=job.error,
            spec=job.spec,
            progress=ProgressRead.model_validate(view.progress, from_attributes=True),
            usage=UsageRead.model_validate(view.usage, from_attributes=True),
            judge=(
                JudgeRead(
                    judged=view.judge.judged,
                    agreed=view.judge.agreed,
                    agreement=view.judge.agreement,
                    verdicts=view.judge.verdicts,
                    accepted_judged=view.judge.accepted_judged,
                    accepted_agreement=view.judge.accepted_agreement,
                    prompt_tokens=view.judge.usage.prompt_tokens,
                    completion_tokens=view.judge.usage.completion_tokens,
                    cost_usd=view.judge.usage.cost_usd,
                )
                if view.judge is not None
                else None
            ),
            budget=BudgetRead(
                budget_usd=job.spec.get("budget_usd"),
                spent_usd=view.spent_usd,
                reserved_usd=view.reserved_usd,
                reserve_usd_per_item=job.reserve_usd_per_item,
            ),
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )


class JobPage(BaseModel):
    items: list[JobRead]
    next_cursor: str | None


class DocumentRead(BaseModel):
    id: uuid.UUID
    job_id: uuid.UUID
    item_index: int
    status: str
    reason: str | None
    detail: str | None
    duplicate_of: uuid.UUID | None
    stance: str
    scenario_id: str
    surface_form: str
    model: str
    prompt_sha256: str
    template_version: str
    text: str | None
    raw_text: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    llm_calls: int
    llm_errors: int
    cost_usd: float
    contamination: dict[str, Any] | None = Field(
        description="The evaluation item the text leaks (rejected as 'contaminated')."
    )
    judge_verdict: str | None
    judge_model: str | None
    judge_prompt_tokens: int
    judge_completion_tokens: int
    judge_cost_usd: float
    meta: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, document: Document) -> DocumentRead:
        return cls.model_validate(document, from_attributes=True)


class WorkItemRead(BaseModel):
    index: int
    state: str
    attempts: int
    plan: dict[str, Any]
    result: dict[str, Any] | None

    @classmethod
    def of(cls, item: WorkItem) -> WorkItemRead:
        return cls(
            index=item.item_index,
            state=item.state,
            attempts=item.attempts,
            plan=item.plan,
            result=item.result,
        )


class WorkItemPage(BaseModel):
    items: list[WorkItemRead]
    next_cursor: str | None


class DocumentPage(BaseModel):
    items: list[DocumentRead]
    next_cursor: str | None


class JobEstimate(BaseModel):
    """What a job would cost (``POST /v1/jobs?dry_run=true``): nothing was stored or sent."""

    documents: int
    acceptance: float = Field(description="Share of items expected to be accepted.")
    items: int = Field(description="Work items expected to run (at most the job's item cap).")
    calls: int = Field(description="LLM calls expected, the judge's included.")
    judge_calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    worst_case_cost_usd: float = Field(
        description="Every item the job may plan, each writing max_tokens: what it can spend."
    )
    assumptions: list[str]
