"""``GET /metrics``: a snapshot of the service's state (app/health/repository.py) in
Prometheus' text format. Pure: no session or client.

The snapshot is read from Postgres (the jobs, and the counters every write keeps, so no
query walks documents or items) and from the broker (queue depth), by one scrape of one API
process: the figures are the deployment's, not the process's, whichever process answers.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.health.repository import Snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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
