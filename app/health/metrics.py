"""``GET /metrics``: the service's state in Prometheus' text format, read when scraped.

Everything here is read from Postgres (the jobs, and the counters every write keeps, so no
query walks documents or items) and from the broker (queue depth), by one scrape of one API
process: the figures are the deployment's, not the process's, whichever process answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.jobs.tally import OUTCOME_PREFIX, SEPARATOR
from app.models import Job, JobTally, Team, UsageDaily, WorkItem

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class Snapshot:
    jobs: dict[str, int]
    documents: dict[tuple[str, str], int]
    items_in_flight: int
    usage: list[tuple[str, str, str, str, int, int, int, int, float]]
    queues: dict[str, int | None]  # None: the broker could not be asked


def read(session: Session, queues: dict[str, int | None]) -> Snapshot:
    jobs = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    documents: dict[tuple[str, str], int] = {}
    outcome_rows = session.execute(
        select(JobTally.bucket, func.sum(JobTally.items))
        .where(JobTally.bucket.startswith(OUTCOME_PREFIX))
        .group_by(JobTally.bucket)
    )
    for bucket, items in outcome_rows:
        _outcome, status, reason = bucket.split(SEPARATOR, 2)
        documents[(status, reason)] = int(items or 0)
    in_flight = session.scalar(
        select(func.count())
        .select_from(WorkItem)
        .join(Job, Job.id == WorkItem.job_id)
        .where(Job.status.in_(ACTIVE), WorkItem.state == "leased")
    )
    usage = session.execute(
        select(
            Team.name,
            UsageDaily.provider,
            UsageDaily.model,
            UsageDaily.purpose,
            func.sum(UsageDaily.calls),
            func.sum(UsageDaily.errors),
            func.sum(UsageDaily.prompt_tokens),
            func.sum(UsageDaily.completion_tokens),
            func.sum(UsageDaily.cost_usd),
        )
        .join(Team, Team.id == UsageDaily.team_id)
        .group_by(Team.name, UsageDaily.provider, UsageDaily.model, UsageDaily.purpose)
    ).all()
    return Snapshot(
        jobs={status: int(count) for status, count in jobs.items()},
        documents=documents,
        items_in_flight=int(in_flight or 0),
        usage=[
            (team, provider, model, purpose, int(c), int(e), int(p), int(o), float(cost))
            for team, provider, model, purpose, c, e, p, o, cost in usage
        ],
        queues=queues,
    )


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        jobs = GaugeMetricFamily("priorforge_jobs", "Jobs by status.", labels=["status"])
        for status in sorted(set(s.jobs) | {"queued", "running", "succeeded", "failed"}):
            jobs.add_metric([status], s.jobs.get(status, 0))
        yield jobs
        documents = CounterMetricFamily(
            "priorforge_documents", "Documents written, by status and reason.",
            labels=["status", "reason"],
        )  # fmt: skip
        for (status, reason), count in sorted(s.documents.items()):
            documents.add_metric([status, reason], count)
        yield documents
        yield GaugeMetricFamily(
            "priorforge_items_in_flight",
            "Work items of active jobs leased by a worker now.",
            value=s.items_in_flight,
        )
        labels = ["team", "provider", "model", "purpose"]
        requests = CounterMetricFamily(
            "priorforge_llm_requests", "LLM requests made.", labels=labels
        )
        errors = CounterMetricFamily(
            "priorforge_llm_errors", "LLM requests that failed.", labels=labels
        )
        tokens = CounterMetricFamily(
            "priorforge_llm_tokens", "LLM tokens, prompt and completion.", labels=[*labels, "kind"]
        )
        cost = CounterMetricFamily("priorforge_cost_usd", "Cost in US dollars.", labels=labels)
        for team, provider, model, purpose, calls, failed, prompt, completion, usd in s.usage:
            key = [team, provider, model, purpose]
            requests.add_metric(key, calls)
            errors.add_metric(key, failed)
            tokens.add_metric([*key, "prompt"], prompt)
            tokens.add_metric([*key, "completion"], completion)
            cost.add_metric(key, usd)
        yield from (requests, errors, tokens, cost)
        depth = GaugeMetricFamily(
            "priorforge_queue_depth", "Messages waiting in a task queue.", labels=["queue"]
        )
        up = GaugeMetricFamily(
            "priorforge_broker_up", "1 if the broker answered this scrape.", labels=["queue"]
        )
        for queue, waiting in sorted(s.queues.items()):
            up.add_metric([queue], 0 if waiting is None else 1)
            if waiting is not None:
                depth.add_metric([queue], waiting)
        yield from (depth, up)


def exposition(snapshot: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    return generate_latest(registry)
