"""A job's numbers the slow way, straight from its rows, to check the counters against.

``grouped`` is the GROUP BY that the job view used to run per read; ``reported`` puts what
the view reports into the same shape.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, func, select

from app.jobs.tally import JudgeReport, Progress, Usage
from app.models import Document, WorkItem

USAGE = ("prompt_tokens", "completion_tokens", "llm_calls", "llm_errors")


def grouped(connection: Connection, job_id: uuid.UUID) -> dict[str, Any]:
    numbers: dict[str, Any] = {
        "attempted": 0,
        "accepted": 0,
        "duplicates": 0,
        "failed": 0,
        "rejected": {},
        "scenarios": 0,
    } | dict.fromkeys((*USAGE, "cost_usd"), 0)
    outcomes = connection.execute(
        select(
            Document.status,
            Document.reason,
            func.count(),
            *(func.sum(getattr(Document, name)) for name in (*USAGE, "cost_usd")),
        )
        .where(Document.job_id == job_id)
        .group_by(Document.status, Document.reason)
    )
    for status, reason, count, *usage in outcomes:
        _add_outcome(numbers, status, reason, count, usage)
    results = connection.scalars(
        select(WorkItem.result).where(WorkItem.job_id == job_id, WorkItem.result.is_not(None))
    )
    for result in results:
        usage = [result.get(name, 0) for name in (*USAGE, "cost_usd")]
        _add_outcome(numbers, result["status"], result.get("reason"), 1, usage)
        numbers["scenarios"] += len(result.get("scenarios", []))
    judge: dict[str, Any] = {
        "judged": 0,
        "agreed": 0,
        "verdicts": {},
        "accepted_judged": 0,
        "accepted_agreed": 0,
        "judge_prompt_tokens": 0,
        "judge_completion_tokens": 0,
        "judge_cost_usd": 0.0,
    }
    verdicts = connection.execute(
        select(
            Document.status,
            Document.stance,
            Document.judge_verdict,
            func.count(),
            func.sum(Document.judge_prompt_tokens),
            func.sum(Document.judge_completion_tokens),
            func.sum(Document.judge_cost_usd),
        )
        .where(Document.job_id == job_id, Document.judge_model.is_not(None))
        .group_by(Document.status, Document.stance, Document.judge_verdict)
    )
    for status, stance, verdict, count, prompt, completion, cost in verdicts:
        judge["judge_prompt_tokens"] += prompt
        judge["judge_completion_tokens"] += completion
        judge["judge_cost_usd"] += cost
        if verdict is None:
            continue
        judge["verdicts"][verdict] = judge["verdicts"].get(verdict, 0) + count
        judge["judged"] += count
        judge["agreed"] += count if verdict == stance else 0
        if status == "accepted":
            judge["accepted_judged"] += count
            judge["accepted_agreed"] += count if verdict == stance else 0
    return _rounded(numbers | {"judge": judge})


def _add_outcome(
    numbers: dict[str, Any], status: str, reason: str | None, count: int, usage: list[Any]
) -> None:
    numbers["attempted"] += count
    if status == "rejected":
        key = reason or "unknown"
        numbers["rejected"][key] = numbers["rejected"].get(key, 0) + count
    else:
        numbers[{"duplicate": "duplicates"}.get(status, status)] += count
    for name, value in zip((*USAGE, "cost_usd"), usage, strict=True):
        numbers[name] += value or 0


def reported(progress: Progress, usage: Usage, judge: JudgeReport | None) -> dict[str, Any]:
    numbers: dict[str, Any] = {
        "attempted": progress.attempted,
        "accepted": progress.accepted,
        "duplicates": progress.duplicates,
        "failed": progress.failed,
        "rejected": progress.rejected,
        "scenarios": progress.scenarios_extracted,
    } | {name: getattr(usage, name) for name in (*USAGE, "cost_usd")}
    judge = judge or JudgeReport()
    numbers["judge"] = {
        "judged": judge.judged,
        "agreed": judge.agreed,
        "verdicts": judge.verdicts,
        "accepted_judged": judge.accepted_judged,
        "accepted_agreed": judge.accepted_agreed,
        "judge_prompt_tokens": judge.usage.prompt_tokens,
        "judge_completion_tokens": judge.usage.completion_tokens,
        "judge_cost_usd": judge.usage.cost_usd,
    }
    return _rounded(numbers)


def _rounded(numbers: dict[str, Any]) -> dict[str, Any]:
    """Costs summed in another order differ in the last bits: compare them to 1e-9 USD."""
    numbers["cost_usd"] = round(float(numbers["cost_usd"]), 9)
    numbers["judge"]["judge_cost_usd"] = round(float(numbers["judge"]["judge_cost_usd"]), 9)
    return numbers
