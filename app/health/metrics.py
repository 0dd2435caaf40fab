"""``GET /metrics``: a snapshot of the service's state (app/health/repository.py) in
Prometheus' text format. Pure: no session or client.

The snapshot is read from Postgres (the jobs, and the counters every write keeps, so no
query walks documents or items) and from the broker (queue depth), by one scrape of one API
process: the figures are the deployment's, not the process's, whichever process answers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from app.health.repository import Snapshot
from app.health.workers import TASK_BUCKETS
from app.llm.limits import LimiterState
from app.llm.stats import LATENCY_BUCKETS

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _SnapshotCollector(Collector):
    def __init__(
        self, snapshot: Snapshot, workers: list[dict[str, Any]], limiters: list[LimiterState]
    ) -> None:
        self.snapshot = snapshot
        self.workers = workers
        self.limiters = limiters

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        statuses = sorted(set(s.jobs) | {"queued", "running", "succeeded", "failed"})
        yield _family(
            GaugeMetricFamily, "priorforge_jobs", "Jobs by status.", ["status"],
            [((status,), s.jobs.get(status, 0)) for status in statuses],
        )  # fmt: skip
        yield _family(
            CounterMetricFamily, "priorforge_documents", "Documents written, by status and reason.",
            ["status", "reason"], sorted(s.documents.items()),
        )  # fmt: skip
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
        queues = sorted(s.queues.items())
        yield _family(
            GaugeMetricFamily, "priorforge_queue_depth", "Messages waiting in a task queue.",
            ["queue"], [((queue,), waiting) for queue, waiting in queues if waiting is not None],
        )  # fmt: skip
        yield _family(
            GaugeMetricFamily, "priorforge_broker_up", "1 if the broker answered this scrape.",
            ["queue"], [((queue,), 0 if waiting is None else 1) for queue, waiting in queues],
        )  # fmt: skip
        yield from self._workers()
        yield from self._limiters()

    def _workers(self) -> Iterator[Metric]:
        """What the live workers published (app/health/workers.py). Counters and histograms
        are one series per worker process (``worker``): each starts with its process, and
        ``sum(rate(...))`` over workers reads a worker that leaves or restarts as the reset
        of its own series, not as a drop of a total. Gauges are summed."""
        yield GaugeMetricFamily(
            "priorforge_workers_online",
            "Worker processes that published their status in the last 20 s.",
            value=len(self.workers),
        )
        running: dict[str, int] = {}
        in_flight: dict[str, int] = {}
        durations: dict[tuple[str, ...], tuple[list[int], float]] = {}
        attempts: dict[tuple[str, ...], int] = {}
        latency: dict[tuple[str, ...], tuple[list[int], float]] = {}
        for status in self.workers:
            try:
                worker = str(status["id"])
                tasks = status.get("tasks", {})
                for task in tasks.get("running", []):
                    running[task["task"]] = running.get(task["task"], 0) + 1
                for name, counts in tasks.get("finished", {}).items():
                    total = tasks.get("seconds", {}).get(name, 0.0)
                    durations[worker, name] = (list(counts), float(total))
                for provider, figures in status.get("llm", {}).items():
                    in_flight[provider] = in_flight.get(provider, 0) + figures["in_flight"]
                    for outcome, count in figures["attempts"].items():
                        attempts[worker, provider, outcome] = count
                    latency[worker, provider] = (
                        list(figures["latency_counts"]),
                        float(figures["latency_sum"]),
                    )
            except (KeyError, TypeError, ValueError, AttributeError):
                # One worker of another version mid-deploy must not take the scrape down.
                log.warning("a worker status this version cannot read: %r", status)
        yield _family(
            GaugeMetricFamily, "priorforge_tasks_running", "Tasks the workers run now.", ["task"],
            [((name,), count) for name, count in sorted(running.items())],
        )  # fmt: skip
        yield _histogram(
            "priorforge_task_duration_seconds",
            "How long each worker's finished tasks took.",
            ["worker", "task"],
            durations,
            TASK_BUCKETS,
        )
        yield _family(
            CounterMetricFamily,
            "priorforge_llm_attempts",
            "HTTP attempts of LLM calls by each worker, by outcome (ok, rate_limited: a 429, "
            "error, cancelled), each retry one more.",
            ["worker", "provider", "outcome"],
            sorted(attempts.items()),
        )
        yield _family(
            GaugeMetricFamily, "priorforge_llm_calls_in_flight",
            "LLM calls waiting on a reply now.", ["provider"],
            [((provider,), count) for provider, count in sorted(in_flight.items())],
        )  # fmt: skip
        yield _histogram(
            "priorforge_llm_attempt_latency_seconds",
            "How long each worker's LLM attempts took, from request to reply or error.",
            ["worker", "provider"],
            latency,
            LATENCY_BUCKETS,
        )

    def _limiters(self) -> Iterator[Metric]:
        labels = ["provider", "model", "key"]
        limit = GaugeMetricFamily(
            "priorforge_llm_concurrency_limit",
            "The shared limiter's adaptive concurrency limit (halved by a 429, grown back "
            "by successes); absent until the first 429.",
            labels=labels,
        )
        share = GaugeMetricFamily(
            "priorforge_llm_rate_share",
            "The share of the configured requests and tokens per minute in effect.",
            labels=labels,
        )
        blocked = GaugeMetricFamily(
            "priorforge_llm_blocked_seconds",
            "Seconds every worker still waits after the provider's last 429.",
            labels=labels,
        )
        for state in self.limiters:
            key = [state.provider, state.model, state.key_digest]
            if state.limit is not None:
                limit.add_metric(key, state.limit)
            share.add_metric(key, state.rate)
            blocked.add_metric(key, state.blocked_for)
        yield from (limit, share, blocked)


def _family(
    kind: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    documentation: str,
    labels: list[str],
    samples: Iterable[tuple[tuple[str, ...], float]],
) -> Metric:
    """A counter or gauge family of (label values, value) samples, in their order."""
    family = kind(name, documentation, labels=labels)
    for key, value in samples:
        family.add_metric(list(key), value)
    return family


def _histogram(
    name: str,
    documentation: str,
    labels: list[str],
    values: dict[tuple[str, ...], tuple[list[int], float]],
    bounds: tuple[float, ...],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for key, (counts, total) in sorted(values.items()):
        if len(counts) != len(bounds) + 1:
            log.warning("%s %s: %d buckets, not %d", name, key, len(counts), len(bounds) + 1)
            continue
        cumulative, buckets = 0, []
        for bound, count in zip((*bounds, float("inf")), counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        family.add_metric(list(key), buckets, sum_value=total)
    return family


def exposition(
    snapshot: Snapshot,
    workers: list[dict[str, Any]] | None = None,
    limiters: list[LimiterState] | None = None,
) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot, workers or [], limiters or []))
    return generate_latest(registry)
