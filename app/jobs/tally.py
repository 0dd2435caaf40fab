"""A job's progress as counters: bucket keys, the increments an outcome adds, and the progress,
usage and judge report read back from them. Pure: no session, no settings.

Writers add to one counter row per (job, bucket) in the transaction that records an outcome,
so reading a job's progress costs one small query however many items it has. Buckets:

- ``outcome|<status>|<reason>``: documents (generation) or item results (extraction) with
  their generation usage; extraction results also count the scenarios they yielded.
- ``judge|<status>|<stance>|<verdict>``: documents the stance judge read (``judge_model`` set),
  with the judge's own usage; an empty verdict means the judge could not be reached.

An empty reason or verdict stands for none. Statuses and stances never contain ``|``; the
last field may, as nothing is split after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

SEPARATOR = "|"
OUTCOME = "outcome"
JUDGE = "judge"
OUTCOME_PREFIX = OUTCOME + SEPARATOR
ACCEPTED_BUCKET = SEPARATOR.join((OUTCOME, "accepted", ""))
ENDED = ("succeeded", "stopped_budget", "failed", "cancelled")


def outcome_bucket(status: str, reason: str | None) -> str:
    return SEPARATOR.join((OUTCOME, status, reason or ""))


def judge_bucket(status: str, stance: str, verdict: str | None) -> str:
    return SEPARATOR.join((JUDGE, status, stance, verdict or ""))


class Tally(NamedTuple):
    """What one bucket of a job's outcomes adds up to (or, as an increment, adds).

    A named tuple: a page of jobs reads hundreds of them, and a tuple is built several times
    faster than a frozen dataclass."""

    bucket: str
    items: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_calls: int = 0
    llm_errors: int = 0
    cost_usd: float = 0.0
    scenarios: int = 0

    def plus(self, other: Tally) -> Tally:
        return Tally(
            bucket=self.bucket,
            items=self.items + other.items,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            llm_calls=self.llm_calls + other.llm_calls,
            llm_errors=self.llm_errors + other.llm_errors,
            cost_usd=self.cost_usd + other.cost_usd,
            scenarios=self.scenarios + other.scenarios,
        )


COUNTERS = (
    "items",
    "prompt_tokens",
    "completion_tokens",
    "llm_calls",
    "llm_errors",
    "cost_usd",
    "scenarios",
)


def document_tallies(values: Mapping[str, Any]) -> list[Tally]:
    """The increments one stored document adds, given its final status and reason."""
    status = str(values["status"])
    tallies = [
        Tally(
            bucket=outcome_bucket(status, values.get("reason")),
            items=1,
            prompt_tokens=int(values.get("prompt_tokens") or 0),
            completion_tokens=int(values.get("completion_tokens") or 0),
            llm_calls=int(values.get("llm_calls") or 0),
            llm_errors=int(values.get("llm_errors") or 0),
            cost_usd=float(values.get("cost_usd") or 0.0),
        )
    ]
    if values.get("judge_model") is not None:
        tallies.append(
            Tally(
                bucket=judge_bucket(status, str(values["stance"]), values.get("judge_verdict")),
                items=1,
                prompt_tokens=int(values.get("judge_prompt_tokens") or 0),
                completion_tokens=int(values.get("judge_completion_tokens") or 0),
                cost_usd=float(values.get("judge_cost_usd") or 0.0),
            )
        )
    return tallies


def result_tally(result: Mapping[str, Any]) -> Tally:
    """The increment one recorded extraction result adds."""
    return Tally(
        bucket=outcome_bucket(str(result["status"]), result.get("reason")),
        items=1,
        prompt_tokens=int(result.get("prompt_tokens", 0)),
        completion_tokens=int(result.get("completion_tokens", 0)),
        llm_calls=int(result.get("llm_calls", 0)),
        llm_errors=int(result.get("llm_errors", 0)),
        cost_usd=float(result.get("cost_usd", 0.0)),
        scenarios=len(result.get("scenarios", [])),
    )


def combine(tallies: Iterable[Tally]) -> list[Tally]:
    """One increment per bucket, in bucket order: every writer of a job then locks its counter
    rows in the same order, so two writers can wait for each other but never deadlock."""
    summed: dict[str, Tally] = {}
    for tally in tallies:
        summed[tally.bucket] = summed[tally.bucket].plus(tally) if tally.bucket in summed else tally
    return [summed[bucket] for bucket in sorted(summed)]


@dataclass(frozen=True)
class Progress:
    requested: int
    planned: int
    attempted: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    failed: int = 0
    in_flight: int = 0
    not_run: int = 0
    scenarios_extracted: int = 0


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_calls: int = 0
    llm_errors: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True)
class JudgeReport:
    """What the stance judge said, and how often it agreed with the planned stance."""

    judged: int = 0
    agreed: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    accepted_judged: int = 0
    accepted_agreed: int = 0
    usage: Usage = field(default_factory=Usage)

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.judged if self.judged else None

    @property
    def accepted_agreement(self) -> float | None:
        return self.accepted_agreed / self.accepted_judged if self.accepted_judged else None


def progress_and_usage(
    tallies: Iterable[Tally], *, requested: int, planned: int, status: str
) -> tuple[Progress, Usage]:
    """A job's progress and generation usage from its counters.

    Every finished item has exactly one outcome (a document row, or an extraction result), so
    the items planned and not yet finished are ``planned - attempted``: in flight while the job
    is queued or running, never run once it has ended.
    """
    attempted = accepted = duplicates = failed = extracted = 0
    prompt_tokens = completion_tokens = llm_calls = llm_errors = 0
    cost = 0.0
    rejected: dict[str, int] = {}
    for tally in tallies:
        kind, status_of, reason = tally.bucket.split(SEPARATOR, 2)
        if kind != OUTCOME:
            continue
        attempted += tally.items
        extracted += tally.scenarios
        if status_of == "accepted":
            accepted += tally.items
        elif status_of == "duplicate":
            duplicates += tally.items
        elif status_of == "failed":
            failed += tally.items
        elif status_of == "rejected":
            key = reason or "unknown"
            rejected[key] = rejected.get(key, 0) + tally.items
        prompt_tokens += tally.prompt_tokens
        completion_tokens += tally.completion_tokens
        llm_calls += tally.llm_calls
        llm_errors += tally.llm_errors
        cost += tally.cost_usd
    usage = Usage(prompt_tokens, completion_tokens, llm_calls, llm_errors, cost)
    unfinished = max(planned - attempted, 0)
    ended = status in ENDED
    progress = Progress(
        requested=requested,
        planned=planned,
        attempted=attempted,
        accepted=accepted,
        rejected=dict(sorted(rejected.items())),
        duplicates=duplicates,
        failed=failed,
        in_flight=0 if ended else unfinished,
        not_run=unfinished if ended else 0,
        scenarios_extracted=extracted,
    )
    return progress, usage


def judge_report(tallies: Iterable[Tally]) -> JudgeReport:
    judged = agreed = accepted_judged = accepted_agreed = 0
    verdicts: dict[str, int] = {}
    prompt_tokens = completion_tokens = 0
    cost = 0.0
    for tally in tallies:
        if not tally.bucket.startswith(JUDGE + SEPARATOR):
            continue
        _kind, status, stance, verdict = tally.bucket.split(SEPARATOR, 3)
        prompt_tokens += tally.prompt_tokens
        completion_tokens += tally.completion_tokens
        cost += tally.cost_usd
        if not verdict:
            continue  # the judge could not be reached
        verdicts[verdict] = verdicts.get(verdict, 0) + tally.items
        agrees = verdict == stance
        judged += tally.items
        agreed += tally.items if agrees else 0
        if status == "accepted":
            accepted_judged += tally.items
            accepted_agreed += tally.items if agrees else 0
    return JudgeReport(
        judged=judged,
        agreed=agreed,
        verdicts=dict(sorted(verdicts.items())),
        accepted_judged=accepted_judged,
        accepted_agreed=accepted_agreed,
        usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                    llm_calls=0, llm_errors=0, cost_usd=cost),
    )  # fmt: skip
