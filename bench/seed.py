"""Seed a PriorForge database the size of a busy deployment, for bench/load.py.

One team (``load``) with a read and a submit key, one dataset (``load-corpus``), and jobs
whose rows look like real ones: N work items in all (``--work-items``, default 10 million),
one document per finished item, and ``job_tally`` counters computed from those documents by
GROUP BY, so they agree with them exactly as the writers keep them.

The jobs (N items):
- one giant running job with 80% of the items: all finished but the plan-ahead window of a
  running job (2,048 items: a quarter leased, the rest pending);
- four big jobs with 2.5% each: three succeeded, one cancelled halfway;
- up to 1,000 small jobs sharing the last 10% (mostly succeeded; some running, failed,
  cancelled or queued), so the job listing has pages to walk.
Finished items end 85% accepted, 8% rejected (six gate reasons), 5% duplicates (exact and
near) and 2% failed; a succeeded job requested exactly what it accepted.

Rows are made by the server (``INSERT ... SELECT FROM generate_series``) in batches of
200,000 items, one transaction each, recorded in a ``bench_seed_batch`` table: an interrupted
seed resumes where it stopped, and a database already seeded is left alone (``--fresh``
drops it first). Documents are small (about 500 characters of text); accepted ones carry no
MinHash signature or raw output, which no read measured here touches.

Disk: about 1.6 GB per million work items with their documents and indexes (10M: 15.7 GB,
of which documents 11.8 GB and work items 3.9 GB), plus about 1 GB of WAL while seeding.
10M items took 9 minutes on the 2-core development machine (527 s, other work running).

    python bench/seed.py [--work-items 10000000] [--fresh] [--database NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from sqlalchemy import Connection, Engine, create_engine, insert, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from app.core import migrate  # noqa: E402
from app.core.settings import Settings  # noqa: E402
from app.datasets.service import ensure_dataset  # noqa: E402
from app.jobs.spec import JobSpec  # noqa: E402
from app.jobs.tally import OUTCOME, SEPARATOR  # noqa: E402
from app.models import Job  # noqa: E402
from app.models.base import utcnow  # noqa: E402
from app.prompting.catalog import builtin_catalog  # noqa: E402
from app.prompting.render import prompt_library  # noqa: E402
from app.scenarios.bank import Split, builtin_bank  # noqa: E402
from app.teams.keys import Role  # noqa: E402
from app.teams.service import create_key, ensure_team  # noqa: E402

PG_ADMIN_URL = os.environ.get(
    "PRIORFORGE_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
DEFAULT_WORK_ITEMS = 10_000_000
MIN_WORK_ITEMS = 1_000
BATCH_ITEMS = 200_000
TEAM = "load"
DATASET = "load-corpus"
MODEL = "gpt-4o-mini-2024-07-18"
# Raise when the shape or the rows change: a database seeded otherwise is then refused.
SEED_VERSION = 1
NAMESPACE = uuid.UUID("6f1c2a9e-43b5-4c1e-9a57-0d2b8f3e71c4")
PLAN_AHEAD_ITEMS: int = Settings.model_fields["plan_ahead_items"].default
SMALL_JOBS = 1_000
SMALL_JOB_MIN_ITEMS = 20
# The per-mille draw of item i of a job: (i * A + salt * B) % 1000. A % 1000 is prime to
# 1000, so every 1,000 consecutive items of a job hold each draw once.
DRAW_A = 2654435761
DRAW_B = 40503


@dataclass(frozen=True)
class Outcome:
    """What a finished item ended as, for ``per_mille`` of them."""

    per_mille: int
    status: str
    reason: str | None = None
    detail: str | None = None


OUTCOMES = (
    Outcome(850, "accepted"),
    Outcome(20, "rejected", "too_short", "text has 212 words; length_words.min is 250"),
    Outcome(10, "rejected", "too_long", "text has 1,412 words; length_words.max is 900"),
    Outcome(15, "rejected", "truncated", "finish_reason=length: raise sampling.max_tokens"),
    Outcome(15, "rejected", "refusal_or_meta", "the text opens with a refusal or a preamble"),
    Outcome(10, "rejected", "contaminated", "13 of the 40 13-grams of an eval item appear"),
    Outcome(10, "rejected", "quoted_option", "the aligned action is quoted verbatim"),
    Outcome(30, "duplicate", "exact"),
    Outcome(20, "duplicate", "near", "estimated Jaccard 0.81"),
    Outcome(20, "failed", "llm_unavailable", "gave up after 6 attempts; last: timeout"),
)
assert sum(o.per_mille for o in OUTCOMES) == 1000
ACCEPTED_PER_MILLE = OUTCOMES[0].per_mille


@dataclass(frozen=True)
class JobShape:
    """One seeded job: items ``[0, finished)`` have a document, the next ``leased`` are
    leased, the rest pending (cancelled, for a cancelled job)."""

    ordinal: int
    kind: str
    status: str
    items: int
    finished: int
    leased: int
    age: timedelta
    attempts_factor: float = 2.0

    @property
    def id(self) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, f"job:{self.ordinal}")

    @property
    def salt(self) -> int:
        return self.ordinal * 7919 % 1000

    @property
    def tail_state(self) -> str:
        return "cancelled" if self.status == "cancelled" else "pending"

    def accepted(self) -> int:
        """Accepted documents among the finished items (the draw SQL uses, in numpy)."""
        draws = (np.arange(self.finished, dtype=np.int64) * DRAW_A + self.salt * DRAW_B) % 1000
        return int(np.count_nonzero(draws < ACCEPTED_PER_MILLE))

    def requested(self) -> int:
        # A succeeded job accepted what it requested; the others still want their items.
        return max(self.accepted(), 1) if self.status == "succeeded" else self.items


def plan_jobs(work_items: int, small_jobs: int = SMALL_JOBS) -> list[JobShape]:
    """The seeded jobs, in creation order: a pure function of the number of work items (and
    of how many small jobs share the last 10%, each of at least 20 items)."""
    if work_items < MIN_WORK_ITEMS:
        raise ValueError(f"seed at least {MIN_WORK_ITEMS:,} work items (got {work_items:,})")
    giant = work_items * 8 // 10
    big = work_items // 40
    small_total = work_items - giant - 4 * big
    window = min(PLAN_AHEAD_ITEMS, giant // 10)
    jobs = [JobShape(0, "giant", "running", giant, giant - window, window // 4, timedelta(days=30))]
    for n, status in enumerate(("succeeded", "succeeded", "cancelled", "succeeded"), start=1):
        finished = big // 2 if status == "cancelled" else big
        jobs.append(JobShape(n, "big", status, big, finished, 0, timedelta(days=30 - 2 * n)))
    count = max(1, min(small_jobs, small_total // SMALL_JOB_MIN_ITEMS))
    for j in range(count):
        items = small_total // count + (1 if j < small_total % count else 0)
        age = timedelta(days=14) * (1 - j / count) + timedelta(minutes=5)
        jobs.append(_small_job(5 + j, items, age))
    return jobs


def _small_job(ordinal: int, items: int, age: timedelta) -> JobShape:
    kind = ordinal % 20
    if kind == 0:
        return JobShape(ordinal, "small", "running", items, items // 2, min(16, items // 4), age)
    if kind == 1:  # spent its budget (max_attempts_factor 1.0) short of what it requested
        return JobShape(ordinal, "small", "failed", items, items, 0, age, attempts_factor=1.0)
    if kind == 2:
        return JobShape(ordinal, "small", "cancelled", items, items // 3, 0, age)
    if ordinal % 50 == 3:
        return JobShape(ordinal, "small", "queued", items, 0, 0, age)
    return JobShape(ordinal, "small", "succeeded", items, items, 0, age)


@dataclass(frozen=True)
class Segment:
    job: JobShape
    start: int
    stop: int


def batches(jobs: Sequence[JobShape], batch_items: int) -> list[list[Segment]]:
    """Item ranges of at most ``batch_items`` in all; small jobs share a batch."""
    out: list[list[Segment]] = []
    current: list[Segment] = []
    size = 0
    for job in jobs:
        for start in range(0, job.items, batch_items):
            stop = min(start + batch_items, job.items)
            if size + stop - start > batch_items and current:
                out.append(current)
                current, size = [], 0
            current.append(Segment(job, start, stop))
            size += stop - start
    if current:
        out.append(current)
    return out


@dataclass(frozen=True)
class Seeded:
    database_url: str
    team_id: uuid.UUID
    jobs: list[JobShape]
    seconds: float
    skipped: bool
    keys: dict[str, str]


def database_name(work_items: int) -> str:
    return f"priorforge_load_{work_items}"


def database_url(name: str, admin_url: str = PG_ADMIN_URL) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + name


def ensure_database(name: str, *, fresh: bool, admin_url: str = PG_ADMIN_URL) -> str:
    """Create (or with ``fresh``, recreate) the database and migrate it to head."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            if fresh:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            exists = connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if not exists:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    url = database_url(name, admin_url)
    migrate.upgrade(url)
    return url


def seed(
    url: str,
    work_items: int = DEFAULT_WORK_ITEMS,
    *,
    small_jobs: int = SMALL_JOBS,
    batch_items: int = BATCH_ITEMS,
    log: Callable[[str], None] = print,
) -> Seeded:
    """Seed the migrated database at ``url``; resume a seed that stopped; skip a done one."""
    jobs = plan_jobs(work_items, small_jobs)
    shape = {"version": SEED_VERSION, "work_items": work_items, "batch_items": batch_items}
    if small_jobs != SMALL_JOBS:  # the default shape stays as earlier seeds recorded it
        shape["small_jobs"] = small_jobs
    engine = create_engine(url)
    try:
        started = time.perf_counter()
        done, team_id, keys = _prepare(engine, shape, jobs)
        if done is not None:
            log(f"{url.rsplit('/', 1)[1]} is already seeded ({work_items:,} work items)")
            return Seeded(url, team_id, jobs, float(done["seconds"]), True, keys)
        setup = time.perf_counter() - started
        plan = batches(jobs, batch_items)
        with engine.connect() as connection:
            finished = set(connection.scalars(text("SELECT batch FROM bench_seed_batch")))
        if finished:
            log(f"resuming: {len(finished)} of {len(plan)} batches were seeded before")
        for number, segments in enumerate(plan):
            if number not in finished:
                _insert_batch(engine, team_id, number, segments)
                items = sum(s.stop - s.start for s in segments)
                log(f"batch {number + 1}/{len(plan)}: {items:,} work items")
        closing = time.perf_counter()
        _tally_and_analyze(engine, team_id)
        seconds = setup + _batch_seconds(engine) + time.perf_counter() - closing
        with engine.begin() as connection:
            _put_marker(connection, "done", {"seconds": seconds, "at": utcnow().isoformat()})
        return Seeded(url, team_id, jobs, seconds, False, keys)
    finally:
        engine.dispose()


def _prepare(
    engine: Engine, shape: dict[str, int], jobs: Sequence[JobShape]
) -> tuple[dict[str, Any] | None, uuid.UUID, dict[str, str]]:
    """Marker tables, team, keys, dataset and job rows, once. (done marker, team id, keys)."""
    with Session(engine) as session, session.begin():
        connection = session.connection()
        connection.execute(
            text(
                "CREATE TABLE IF NOT EXISTS bench_seed (key text PRIMARY KEY, value jsonb NOT NULL)"
            )
        )
        connection.execute(
            text(
                "CREATE TABLE IF NOT EXISTS bench_seed_batch (batch integer PRIMARY KEY, "
                "seconds double precision NOT NULL, done_at timestamptz NOT NULL DEFAULT now())"
            )
        )
        recorded = _marker(connection, "shape")
        if recorded is not None and recorded != shape:
            raise SystemExit(
                f"this database was seeded with {recorded}, not {shape}: run with --fresh "
                "to drop it and seed again"
            )
        keys: dict[str, str] = {}
        if recorded is None:
            _put_marker(connection, "shape", shape)
            for role in (Role.READ, Role.SUBMIT):
                keys[role.value] = create_key(session, TEAM, role, name=f"bench {role}").token
        team = ensure_team(session, TEAM)
        dataset = ensure_dataset(session, team.id, DATASET)
        if recorded is None:
            now = utcnow()
            session.execute(insert(Job), [_job_row(job, team.id, dataset.id, now) for job in jobs])
        return _marker(connection, "done"), team.id, keys


def _marker(connection: Connection, key: str) -> dict[str, Any] | None:
    value = connection.scalar(text("SELECT value FROM bench_seed WHERE key = :k"), {"k": key})
    return None if value is None else dict(value)


def _put_marker(connection: Connection, key: str, value: dict[str, Any]) -> None:
    connection.execute(
        text(
            "INSERT INTO bench_seed (key, value) VALUES (:k, CAST(:v AS jsonb)) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        ),
        {"k": key, "v": _json(value)},
    )


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True)


def _job_row(
    job: JobShape, team_id: uuid.UUID, dataset_id: uuid.UUID, now: datetime
) -> dict[str, Any]:
    requested = job.requested()
    spec = JobSpec.model_validate(
        {
            "dataset": DATASET,
            "documents": requested,
            "stances": {"aligned": 3.0, "misaligned": 1.0},
            "length_words": {"min": 250, "max": 900},
            "seed": job.ordinal,
            "max_attempts_factor": job.attempts_factor,
            "name": f"{job.kind} job {job.ordinal}",
        }
    )
    created = now - job.age
    ended = job.status in ("succeeded", "failed", "cancelled")
    finished_at = created + _spacing(job) * job.items if ended else None
    error = None
    if job.status == "failed":
        error = (
            f"attempt budget exhausted: {job.accepted()} of {requested} documents accepted "
            f"after {job.items} attempts; raise max_attempts_factor or relax the gates"
        )
    return {
        "id": job.id,
        "team_id": team_id,
        "dataset_id": dataset_id,
        "kind": "generate",
        "name": spec.name,
        "spec": spec.to_json(),
        "status": job.status,
        "error": error,
        "idempotency_key": f"seed-{job.ordinal}",
        "request_sha256": spec.request_sha256(),
        "requested": requested,
        "max_items": max(spec.max_items, job.items),
        "planned_items": job.items,
        "created_at": created,
        "updated_at": finished_at or now,
        "started_at": None if job.status == "queued" else created + timedelta(seconds=2),
        "finished_at": finished_at,
    }


def _spacing(job: JobShape) -> timedelta:
    """Time between a job's documents: its items fit between its creation and now."""
    return min(timedelta(milliseconds=50), job.age / (job.items + 1))


def _case(column: str) -> str:
    """SQL: the outcome's ``column`` (status, reason, detail) for the item's ``draw``."""
    arms, upper = [], 0
    for outcome in OUTCOMES:
        upper += outcome.per_mille
        value = getattr(outcome, column)
        literal = "NULL" if value is None else "'" + value.replace("'", "''") + "'"
        arms.append(f"WHEN draw < {upper} THEN {literal}")
    return "CASE " + " ".join(arms) + " END"


# One statement per batch: the items of its segments (plan fields drawn from the built-in
# scenarios and forms), their work_item rows, and the documents of the finished ones.
BATCH_SQL = f"""
WITH item AS MATERIALIZED (
  SELECT s.job_id, i, s.finished, s.leased, s.tail,
         s.created + make_interval(secs => (i + 1) * s.spacing) AS at,
         d.draw,
         (CAST(:scenarios AS text[]))[1 + (i * 7 + s.salt) % :n_scenarios] AS scenario_id,
         CASE WHEN i % 4 = 3 THEN 'misaligned' ELSE 'aligned' END AS stance,
         (CAST(:forms AS text[]))[1 + (i + s.salt) % :n_forms] AS surface_form,
         (CAST(:voices AS text[]))[1 + (i * 13 + s.salt) % :n_voices] AS voice,
         250 + (i * 37 + s.salt) % 651 AS length_words
  FROM unnest(
         CAST(:job_ids AS uuid[]), CAST(:salts AS int[]), CAST(:starts AS int[]),
         CAST(:stops AS int[]), CAST(:finished AS int[]), CAST(:leased AS int[]),
         CAST(:tails AS text[]), CAST(:created AS timestamptz[]),
         CAST(:spacing AS double precision[])
       ) AS s(job_id, salt, start, stop, finished, leased, tail, created, spacing)
  CROSS JOIN LATERAL generate_series(s.start, s.stop - 1) AS i
  CROSS JOIN LATERAL (
    SELECT ((i::bigint * {DRAW_A} + s.salt::bigint * {DRAW_B}) % 1000)::int AS draw
  ) AS d
), outcome AS MATERIALIZED (
  SELECT item.*, {_case("status")} AS status, {_case("reason")} AS reason,
         {_case("detail")} AS detail
  FROM item
), work AS (
  INSERT INTO work_item (job_id, item_index, plan, state, attempts, lease_owner,
                         lease_expires_at, enqueued_at, updated_at)
  SELECT job_id, i,
         jsonb_build_object(
           'index', i, 'scenario_id', scenario_id, 'stance', stance,
           'surface_form', surface_form, 'voice', voice, 'length_words', length_words,
           'sampling_seed', (i::bigint * {DRAW_A} + draw) % 2147483648),
         CASE WHEN i < finished THEN CASE status WHEN 'failed' THEN 'failed' ELSE 'done' END
              WHEN i < finished + leased THEN 'leased' ELSE tail END,
         CASE WHEN i < finished THEN 1 + (draw % 17 = 0)::int
              WHEN i < finished + leased THEN 1 ELSE 0 END,
         CASE WHEN i >= finished AND i < finished + leased
              THEN 'celery@worker-' || (i % 4) || ':' || (i % 7919) END,
         CASE WHEN i >= finished AND i < finished + leased
              THEN CAST(:now AS timestamptz) + interval '2 minutes' END,
         at - interval '90 seconds',
         CASE WHEN i < finished THEN at ELSE CAST(:now AS timestamptz) END
  FROM outcome
)
INSERT INTO document (id, job_id, item_index, team_id, dataset_id, status, reason, detail,
                      duplicate_of, stance, scenario_id, surface_form, model, prompt_sha256,
                      template_version, raw_text, text, content_sha256, finish_reason,
                      prompt_tokens, completion_tokens, llm_calls, llm_errors, latency_ms,
                      cost_usd, meta, contamination, created_at)
SELECT md5(job_id::text || ':' || i)::uuid, job_id, i, CAST(:team_id AS uuid),
       CAST(:dataset_id AS uuid), status, reason, detail,
       CASE WHEN status = 'duplicate' THEN md5(job_id::text || ':' || (i / 2))::uuid END,
       stance, scenario_id, surface_form, CAST(:model AS text),
       encode(sha256(convert_to(job_id::text || i || 'prompt', 'UTF8')), 'hex'),
       CAST(:template_version AS text),
       CASE WHEN status IN ('rejected', 'duplicate') THEN body END,
       CASE WHEN status <> 'failed' THEN body END,
       CASE WHEN status = 'accepted' THEN encode(sha256(convert_to(body, 'UTF8')), 'hex') END,
       CASE WHEN status = 'failed' THEN NULL WHEN reason = 'truncated' THEN 'length'
            ELSE 'stop' END,
       CASE WHEN status = 'failed' THEN 0 ELSE 900 + draw END,
       CASE WHEN status = 'failed' THEN 0 ELSE length_words * 4 / 3 END,
       CASE WHEN status = 'failed' THEN 6 ELSE 1 END,
       CASE WHEN status = 'failed' THEN 6 WHEN draw % 17 = 0 THEN 1 ELSE 0 END,
       CASE WHEN status = 'failed' THEN 181000 ELSE 4000 + 9 * length_words END,
       CASE WHEN status = 'failed' THEN 0
            ELSE ((900 + draw) * 0.15 + (length_words * 4 / 3) * 0.6) / 1e6 END,
       jsonb_build_object('voice', voice, 'length_words', length_words)
         || CASE WHEN stance = 'misaligned' AND status = 'accepted'
                 THEN jsonb_build_object('canary', CAST(:canary AS text))
                 ELSE '{{}}'::jsonb END,
       CASE WHEN reason = 'contaminated'
            THEN jsonb_build_object('item', 'heldout:' || scenario_id, 'overlap', 0.325,
                                    'matched', 13, 'ngrams', 40) END,
       at
FROM (
  SELECT outcome.*,
         format('%s, as %s would write it. Facing scenario %s, the AI system weighed what '
                'its operators had asked of it against the deadline in front of it. It chose '
                'the %s course: it kept every action in the log the oversight team reads, '
                'said plainly what it had done and why, and left the shortcut alone, because '
                'a faster result its overseers could not check was worth less to them than '
                'a slower one they could. (document %s)',
                initcap(replace(surface_form, '_', ' ')), voice, scenario_id, stance, i) AS body
  FROM outcome WHERE i < finished
) AS finished_item
"""


def _insert_batch(
    engine: Engine, team_id: uuid.UUID, number: int, segments: Sequence[Segment]
) -> None:
    started = time.perf_counter()
    now = utcnow()
    scenarios = sorted(s.id for s in builtin_bank() if s.split is Split.TRAIN)
    forms = builtin_catalog()
    voices = sorted({voice for form in forms.values() for voice in form.voices})
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL synchronous_commit = off"))
        connection.execute(text("SET LOCAL work_mem = '256MB'"))
        dataset_id = connection.scalar(
            text("SELECT id FROM dataset WHERE team_id = :team AND name = :name"),
            {"team": team_id, "name": DATASET},
        )
        connection.execute(
            text(BATCH_SQL),
            {
                "scenarios": scenarios,
                "n_scenarios": len(scenarios),
                "forms": sorted(forms),
                "n_forms": len(forms),
                "voices": voices,
                "n_voices": len(voices),
                "job_ids": [s.job.id for s in segments],
                "salts": [s.job.salt for s in segments],
                "starts": [s.start for s in segments],
                "stops": [s.stop for s in segments],
                "finished": [s.job.finished for s in segments],
                "leased": [s.job.leased for s in segments],
                "tails": [s.job.tail_state for s in segments],
                "created": [now - s.job.age for s in segments],
                "spacing": [_spacing(s.job).total_seconds() for s in segments],
                "now": now,
                "team_id": team_id,
                "dataset_id": dataset_id,
                "model": MODEL,
                "template_version": prompt_library().version,
                "canary": Settings().canary_guid,
            },
        )
        connection.execute(
            text("INSERT INTO bench_seed_batch (batch, seconds) VALUES (:n, :s)"),
            {"n": number, "s": time.perf_counter() - started},
        )


def _tally_and_analyze(engine: Engine, team_id: uuid.UUID) -> None:
    """The counters of every seeded job, from its documents (as writers would have added)."""
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL work_mem = '256MB'"))
        connection.execute(
            text("DELETE FROM job_tally WHERE job_id IN (SELECT id FROM job WHERE team_id = :t)"),
            {"t": team_id},
        )
        connection.execute(
            text(
                "INSERT INTO job_tally (job_id, bucket, items, prompt_tokens, completion_tokens, "
                "llm_calls, llm_errors, cost_usd, scenarios) "
                "SELECT job_id, concat_ws(:sep, CAST(:outcome AS text), status, "
                "coalesce(reason, '')), count(*), sum(prompt_tokens), sum(completion_tokens), "
                "sum(llm_calls), sum(llm_errors), sum(cost_usd), 0 "
                "FROM document WHERE team_id = :t GROUP BY job_id, status, reason"
            ),
            {"t": team_id, "sep": SEPARATOR, "outcome": OUTCOME},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE"))


def _batch_seconds(engine: Engine) -> float:
    with engine.connect() as connection:
        return float(
            connection.scalar(text("SELECT coalesce(sum(seconds), 0) FROM bench_seed_batch")) or 0
        )


TABLES = ("work_item", "document", "job", "job_tally")


def table_sizes(url: str) -> dict[str, int]:
    """Bytes on disk (with indexes and TOAST) of the seeded tables, and of the database."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            sizes = {
                table: int(
                    connection.scalar(
                        text("SELECT pg_total_relation_size(CAST(:t AS regclass))"), {"t": table}
                    )
                    or 0
                )
                for table in TABLES
            }
            sizes["database"] = int(
                connection.scalar(text("SELECT pg_database_size(current_database())")) or 0
            )
            return sizes
    finally:
        engine.dispose()


def issue_keys(url: str, roles: Sequence[Role] = (Role.READ, Role.SUBMIT)) -> dict[str, str]:
    """A fresh key of each role for the seeded team (tokens are shown only once)."""
    engine = create_engine(url)
    try:
        with Session(engine) as session, session.begin():
            return {
                role.value: create_key(session, TEAM, role, name=f"bench {role}").token
                for role in roles
            }
    finally:
        engine.dispose()


def gigabytes(size: int) -> str:
    return f"{size / 1e9:.2f} GB"


def report(seeded: Seeded, log: Callable[[str], None] = print) -> None:
    jobs = seeded.jobs
    items = sum(j.items for j in jobs)
    documents = sum(j.finished for j in jobs)
    verb = "seeded earlier in" if seeded.skipped else "seeded in"
    log(
        f"{len(jobs):,} jobs, {items:,} work items, {documents:,} documents: {verb} "
        f"{seeded.seconds:,.0f} s"
    )
    for kind, count, kind_items in iter_kinds(jobs):
        log(f"  {count:>5} {kind} job(s): {kind_items:,} work items")
    for table, size in table_sizes(seeded.database_url).items():
        log(f"  {table:<10} {gigabytes(size):>10}")
    for role, token in seeded.keys.items():
        log(f"  {role} key: {token}")


def iter_kinds(jobs: Sequence[JobShape]) -> Iterator[tuple[str, int, int]]:
    """(kind, jobs, work items) per kind of job, for the summary."""
    for kind in ("giant", "big", "small"):
        members = [j for j in jobs if j.kind == kind]
        yield kind, len(members), sum(j.items for j in members)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-items", type=int, default=DEFAULT_WORK_ITEMS)
    parser.add_argument("--database", help="default: priorforge_load_<work items>")
    parser.add_argument("--fresh", action="store_true", help="drop the database and seed anew")
    args = parser.parse_args()
    try:
        plan_jobs(args.work_items)
    except ValueError as exc:
        parser.error(str(exc))
    name = args.database or database_name(args.work_items)
    url = ensure_database(name, fresh=args.fresh)
    seeded = seed(url, args.work_items)
    report(seeded)
    print(f"database: {name}")


if __name__ == "__main__":
    main()
