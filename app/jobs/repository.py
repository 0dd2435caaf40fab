"""Every query about jobs, work items and documents. Callers own the transaction."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Integer,
    and_,
    bindparam,
    case,
    delete,
    func,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Update

from app.core.sql import (
    among,
    array_literal,
    copy_rows,
    dialect_insert,
    insert_ignoring_conflicts,
    is_postgres,
    json_rows,
)
from app.jobs.tally import ACCEPTED_BUCKET, COUNTERS, ENDED, OUTCOME_PREFIX, Tally, combine
from app.models import (
    ActivityMinute,
    ContentFingerprint,
    Dataset,
    Document,
    Job,
    JobMinute,
    JobTally,
    LlmBatch,
    Team,
    WorkItem,
)

ACTIVE = ("queued", "running")


def get_job(session: Session, job_id: uuid.UUID, team_id: uuid.UUID | None = None) -> Job | None:
    query = select(Job).where(Job.id == job_id)
    if team_id is not None:
        query = query.where(Job.team_id == team_id)
    return session.scalars(query).one_or_none()


class JobRecord(NamedTuple):
    """What a job's view shows of its row, read as plain columns: building ORM objects would
    cost a page of jobs more CPU than its query."""

    id: uuid.UUID
    dataset_id: uuid.UUID | None
    kind: str
    name: str | None
    spec: dict[str, Any]
    status: str
    error: str | None
    requested: int
    planned_items: int
    reserve_usd_per_item: float
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: Job) -> JobRecord:
        return cls(*(getattr(job, name) for name in cls._fields))


_RECORD_COLUMNS = tuple(getattr(Job, name) for name in JobRecord._fields)
_RECORD_WIDTH = len(_RECORD_COLUMNS)


# A job's counter rows as one JSON value, ``[[bucket, items, …], …]`` in ``COUNTERS`` order
# (see ``json_rows``): of one job by id, or of each job of the enclosing statement.
_COUNTER_ROWS = json_rows(JobTally.bucket, *(getattr(JobTally, name) for name in COUNTERS))
_JOB_TALLIES = select(_COUNTER_ROWS).where(JobTally.job_id == bindparam("job_id"))
_TALLY_ROWS = select(_COUNTER_ROWS).where(JobTally.job_id == Job.id).scalar_subquery()


def _tallies(rows: list[list[Any]] | None) -> list[Tally]:
    return [Tally(*row) for row in rows or ()]


def _read(row: Any) -> tuple[JobRecord, str | None, list[Tally]]:
    """A row of ``_RECORD_COLUMNS``, the dataset's name and ``_TALLY_ROWS``."""
    return (
        JobRecord(*row[:_RECORD_WIDTH]),
        row[_RECORD_WIDTH],
        _tallies(row[_RECORD_WIDTH + 1]),
    )


# The status read's statement, built once: constructing a select costs more CPU than
# running it, and this one runs on every GET /v1/jobs/{id}.
_JOB_READ = (
    select(*_RECORD_COLUMNS, Dataset.name, _TALLY_ROWS)
    .outerjoin(Dataset, Dataset.id == Job.dataset_id)
    .where(Job.id == bindparam("job_id"), Job.team_id == bindparam("team_id"))
)


def get_job_read(
    session: Session, job_id: uuid.UUID, team_id: uuid.UUID
) -> tuple[JobRecord, str | None, list[Tally]] | None:
    """A team's job with its dataset's name and its counters: one statement, one round trip."""
    row = session.execute(_JOB_READ, {"job_id": job_id, "team_id": team_id}).one_or_none()
    return None if row is None else _read(row)


def get_job_by_idempotency_key(session: Session, team_id: uuid.UUID, key: str) -> Job | None:
    return session.scalars(
        select(Job).where(Job.team_id == team_id, Job.idempotency_key == key)
    ).one_or_none()


def list_jobs(
    session: Session,
    team_id: uuid.UUID,
    *,
    status: str | None,
    dataset_id: uuid.UUID | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[tuple[JobRecord, str | None, list[Tally]]]:
    """A page of the team's jobs, newest first, with their datasets' names and counters, in
    one statement."""
    statement = _page_statement(status is not None, dataset_id is not None, before is not None)
    values: dict[str, Any] = {
        "team_id": team_id, "status": status, "dataset_id": dataset_id, "limit": limit
    }  # fmt: skip
    if before:
        values["created"], values["job_id"] = before
    return [_read(row) for row in session.execute(statement, values)]


@functools.cache
def _page_statement(by_status: bool, by_dataset: bool, after_cursor: bool) -> Any:
    """The listing's statement for one combination of filters, built once (see _JOB_READ)."""
    query = (
        select(*_RECORD_COLUMNS, Dataset.name, _TALLY_ROWS)
        .outerjoin(Dataset, Dataset.id == Job.dataset_id)
        .where(Job.team_id == bindparam("team_id"))
    )
    if by_status:
        query = query.where(Job.status == bindparam("status"))
    if by_dataset:
        query = query.where(Job.dataset_id == bindparam("dataset_id"))
    if after_cursor:
        created: Any = bindparam("created")
        job_id: Any = bindparam("job_id")
        query = query.where(
            or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id))
        )
    return query.order_by(Job.created_at.desc(), Job.id.desc()).limit(bindparam("limit"))


def active_job_ids(session: Session) -> Sequence[uuid.UUID]:
    return session.scalars(select(Job.id).where(Job.status.in_(ACTIVE))).all()


def lock_team(session: Session, team_id: uuid.UUID) -> tuple[int | None, int | None]:
    """Hold the team's row until the transaction ends (SQLite's one writer needs no lock);
    its own quotas: (max active jobs, max documents per job), None where it has none.

    FOR NO KEY UPDATE: it queues other submissions of the team, but not the inserts that
    merely reference the team (their foreign-key check takes a KEY SHARE lock)."""
    row = session.execute(
        select(Team.max_active_jobs, Team.max_documents_per_job)
        .where(Team.id == team_id)
        .with_for_update(key_share=True)
    ).one_or_none()
    return (row[0], row[1]) if row is not None else (None, None)


def try_lock_team(session: Session, team_id: uuid.UUID) -> bool:
    """Take the team's row lock if no other transaction holds it: false if one does.

    For callers that may already hold one of the team's job rows: waiting for the team's row
    there could deadlock with a submission, which locks the team first."""
    found = session.execute(
        select(Team.id).where(Team.id == team_id).with_for_update(key_share=True, skip_locked=True)
    ).first()
    return found is not None


def count_active_jobs(session: Session, team_id: uuid.UUID) -> int:
    return int(
        session.scalar(select(func.count()).where(Job.team_id == team_id, Job.status.in_(ACTIVE)))
        or 0
    )


def active_jobs_by_team(session: Session) -> dict[uuid.UUID, int]:
    """Each team's queued and running jobs (teams with none are left out)."""
    rows = session.execute(
        select(Job.team_id, func.count()).where(Job.status.in_(ACTIVE)).group_by(Job.team_id)
    )
    return {team_id: int(count) for team_id, count in rows}


def active_job_specs(
    session: Session, team_id: uuid.UUID
) -> list[tuple[uuid.UUID, dict[str, Any]]]:
    rows = session.execute(
        select(Job.id, Job.spec).where(Job.team_id == team_id, Job.status.in_(ACTIVE))
    )
    return [(row.id, row.spec) for row in rows]


def dataset_names(session: Session, dataset_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not dataset_ids:
        return {}
    rows = session.execute(select(Dataset.id, Dataset.name).where(Dataset.id.in_(dataset_ids)))
    return {row.id: row.name for row in rows}


def transition(
    session: Session, job_id: uuid.UUID, from_states: Sequence[str], **values: Any
) -> bool:
    """Guarded state change: true only for the caller that moved the job."""
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.status.in_(from_states)).values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def touch_job(session: Session, job_id: uuid.UUID, now: datetime) -> None:
    """Record activity: the reconciler treats a job untouched for long as stalled."""
    session.execute(update(Job).where(Job.id == job_id).values(updated_at=now))


def claim_finalization(
    session: Session, job_id: uuid.UUID, now: datetime, stale_before: datetime
) -> bool:
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running")
        .where(or_(Job.finalizing_at.is_(None), Job.finalizing_at < stale_before))
        .values(finalizing_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def renew_finalization(
    session: Session, job_id: uuid.UUID, last_renewed: datetime, now: datetime
) -> bool:
    """Keep a finalization claim alive; False if the job was cancelled or re-claimed."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running")
        .where(Job.finalizing_at == last_renewed)
        .values(finalizing_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release_fingerprints(session: Session, job_id: uuid.UUID) -> None:
    """Forget the texts of a job that will never publish, so later jobs may use them."""
    session.execute(
        delete(ContentFingerprint).where(
            ContentFingerprint.document_id.in_(select(Document.id).where(Document.job_id == job_id))
        )
    )


def claim_reconcile(
    session: Session, job_id: uuid.UUID, now: datetime, stale_before: datetime
) -> bool:
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE))
        .where(or_(Job.reconciled_at.is_(None), Job.reconciled_at < stale_before))
        .values(reconciled_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def advance_planned(session: Session, job_id: uuid.UUID, old: int, new: int) -> bool:
    """Compare-and-set on ``planned_items`` so concurrent workers never plan the same items."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.planned_items == old, Job.status.in_(ACTIVE))
        .values(planned_items=new)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def add_work_items(
    session: Session, job_id: uuid.UUID, plans: Sequence[dict[str, Any]], now: datetime
) -> None:
    if not plans:
        return
    rows = [
        {
            "job_id": job_id,
            "item_index": plan["index"],
            "plan": plan,
            "state": "pending",
            "attempts": 0,
            "enqueued_at": now,
            "updated_at": now,
        }
        for plan in plans
    ]
    if is_postgres(session) and copy_rows(session, WorkItem.__table__, rows):  # type: ignore[arg-type]
        return
    session.execute(insert_ignoring_conflicts(session, WorkItem), rows)


@dataclass(frozen=True)
class LeasedItem:
    index: int
    plan: dict[str, Any]
    attempts: int


def lease_items(
    session: Session,
    job_id: uuid.UUID,
    start: int,
    end: int,
    owner: str,
    now: datetime,
    expires: datetime,
) -> list[LeasedItem]:
    """Lease every pending (or lease-expired) item with ``start <= index < end``."""
    result = session.execute(
        update(WorkItem)
        .where(WorkItem.job_id == job_id, WorkItem.item_index >= start, WorkItem.item_index < end)
        .where(
            or_(
                WorkItem.state == "pending",
                and_(WorkItem.state == "leased", WorkItem.lease_expires_at < now),
            )
        )
        .values(
            state="leased",
            lease_owner=owner,
            lease_expires_at=expires,
            attempts=WorkItem.attempts + 1,
            updated_at=now,
        )
        .returning(WorkItem.item_index, WorkItem.plan, WorkItem.attempts)
    )
    leased = [LeasedItem(row.item_index, row.plan, row.attempts) for row in result]
    return sorted(leased, key=lambda item: item.index)


def lease_orphans(
    session: Session,
    job_id: uuid.UUID,
    owner: str,
    now: datetime,
    expires: datetime,
    limit: int,
) -> list[LeasedItem]:
    """Lease up to ``limit`` items of the job whose lease ran out (a killed worker's, or a
    deferral's that is over), wherever they are: a worker starting a chunk takes them up
    without waiting for the reconciler to send them again."""
    lapsed = and_(WorkItem.state == "leased", WorkItem.lease_expires_at < now)
    return _lease_first(session, job_id, lapsed, owner, now, expires, limit)


def lease_next(
    session: Session,
    job_id: uuid.UUID,
    owner: str,
    now: datetime,
    expires: datetime,
    limit: int,
) -> list[LeasedItem]:
    """Lease up to ``limit`` of the job's items wherever their chunk is: lapsed leases first,
    then the lowest pending items. A worker with free call slots takes more of its job's
    work without waiting for that chunk's message. Rows another transaction holds are
    skipped, not waited on."""
    leased = lease_orphans(session, job_id, owner, now, expires, limit)
    pending = WorkItem.state == "pending"
    return leased + _lease_first(session, job_id, pending, owner, now, expires, limit - len(leased))


def _lease_first(
    session: Session,
    job_id: uuid.UUID,
    free: ColumnElement[bool],
    owner: str,
    now: datetime,
    expires: datetime,
    limit: int,
) -> list[LeasedItem]:
    """Lease the ``limit`` lowest-numbered items of the job that are ``free``: one state and
    a filter, so the (job, state, index) index yields them in order."""
    if limit <= 0:
        return []
    # Materialised: as an IN (subquery), Postgres may run the LIMIT again for each row it
    # updates, and then leases far more than ``limit`` items.
    first = (
        select(WorkItem.item_index)
        .where(WorkItem.job_id == job_id, free)
        .order_by(WorkItem.item_index)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("first_free")
        .prefix_with("MATERIALIZED")
    )
    result = session.execute(
        update(WorkItem)
        .where(WorkItem.job_id == job_id, WorkItem.item_index == first.c.item_index, free)
        .values(
            state="leased",
            lease_owner=owner,
            lease_expires_at=expires,
            attempts=WorkItem.attempts + 1,
            updated_at=now,
        )
        .returning(WorkItem.item_index, WorkItem.plan, WorkItem.attempts)
    )
    leased = [LeasedItem(row.item_index, row.plan, row.attempts) for row in result]
    return sorted(leased, key=lambda item: item.index)


def extend_leases(
    session: Session, job_id: uuid.UUID, indices: Sequence[int], owner: str, expires: datetime
) -> None:
    if indices:
        session.execute(
            update(WorkItem)
            .where(WorkItem.job_id == job_id, WorkItem.item_index.in_(indices))
            .where(WorkItem.state == "leased", WorkItem.lease_owner == owner)
            .values(lease_expires_at=expires)
        )


DEFERRED_OWNER = "deferred"


def defer_items(
    session: Session,
    job_id: uuid.UUID,
    indices: Sequence[int],
    owner: str,
    until: datetime,
    now: datetime,
) -> int:
    """Give leased items back until ``until`` (a provider asked to wait that long): their
    lease passes to nobody and ends then, when the reconciler sends them again; the attempt
    they were leased for does not count."""
    if not indices:
        return 0
    result = session.execute(
        update(WorkItem)
        .where(WorkItem.job_id == job_id, WorkItem.item_index.in_(indices))
        .where(WorkItem.state == "leased", WorkItem.lease_owner == owner)
        .values(
            lease_owner=DEFERRED_OWNER,
            lease_expires_at=until,
            attempts=WorkItem.attempts - 1,
            updated_at=now,
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def expire_stale_leases(session: Session, job_id: uuid.UUID, now: datetime) -> list[int]:
    """Return items whose worker vanished to pending; the caller re-dispatches them."""
    result = session.execute(
        update(WorkItem)
        .where(WorkItem.job_id == job_id, WorkItem.state == "leased")
        .where(WorkItem.lease_expires_at < now)
        .values(state="pending", lease_owner=None, lease_expires_at=None, enqueued_at=now)
        .returning(WorkItem.item_index)
    )
    return sorted(row.item_index for row in result)


def stale_pending(
    session: Session, job_id: uuid.UUID, enqueued_before: datetime, limit: int
) -> list[int]:
    """The oldest pending items whose chunk message has not been sent since ``enqueued_before``."""
    return list(
        session.scalars(
            select(WorkItem.item_index)
            .where(
                WorkItem.job_id == job_id,
                WorkItem.state == "pending",
                WorkItem.enqueued_at < enqueued_before,
            )
            .order_by(WorkItem.item_index)
            .limit(limit)
        ).all()
    )


def transfer_leases(
    session: Session,
    job_id: uuid.UUID,
    indices: Sequence[int],
    owner: str,
    new_owner: str,
    until: datetime,
) -> list[int]:
    """Pass ``owner``'s leased items to ``new_owner`` (a batch; or itself, to move the
    lease's end) until ``until``: the items it held."""
    return _update_held(
        session, job_id, indices, owner, lease_owner=new_owner, lease_expires_at=until
    )


def release_leases(
    session: Session, job_id: uuid.UUID, indices: Sequence[int], owner: str, now: datetime
) -> list[int]:
    """Return the items ``owner`` still holds to pending (to be sent again)."""
    return _update_held(
        session, job_id, indices, owner,
        state="pending", lease_owner=None, lease_expires_at=None, updated_at=now,
    )  # fmt: skip


def _update_held(
    session: Session, job_id: uuid.UUID, indices: Sequence[int], owner: str, **values: Any
) -> list[int]:
    """Set ``values`` on those of the items that ``owner`` holds leased: their indices."""
    if not indices:
        return []
    result = session.execute(
        update(WorkItem)
        .where(WorkItem.job_id == job_id, WorkItem.item_index.in_(indices))
        .where(WorkItem.state == "leased", WorkItem.lease_owner == owner)
        .values(**values)
        .returning(WorkItem.item_index)
    )
    return sorted(result.scalars())


def items_held_by(
    session: Session, job_id: uuid.UUID, indices: Sequence[int], owner: str
) -> list[LeasedItem]:
    rows = session.execute(
        select(WorkItem.item_index, WorkItem.plan, WorkItem.attempts)
        .where(WorkItem.job_id == job_id, WorkItem.item_index.in_(indices))
        .where(WorkItem.state == "leased", WorkItem.lease_owner == owner)
        .order_by(WorkItem.item_index)
    )
    return [LeasedItem(row.item_index, row.plan, row.attempts) for row in rows]


def claim_due_batches(
    session: Session, job_id: uuid.UUID, now: datetime, polled_before: datetime
) -> list[LlmBatch]:
    """The job's sent batches not polled since ``polled_before``, claimed for this poll."""
    due = (
        update(LlmBatch)
        .where(LlmBatch.job_id == job_id, LlmBatch.status == "submitted")
        .where(or_(LlmBatch.polled_at.is_(None), LlmBatch.polled_at < polled_before))
        .values(polled_at=now)
        .returning(LlmBatch)
    )
    return list(session.scalars(due))


def confirm_batch(
    session: Session, batch_id: uuid.UUID, provider_batch_id: str, file_id: str, status: str
) -> bool:
    """Mark a batch sent, unless the stale sweep gave it up meanwhile."""
    result = session.execute(
        update(LlmBatch)
        .where(LlmBatch.id == batch_id, LlmBatch.status == "creating")
        .values(
            status="submitted",
            provider_batch_id=provider_batch_id,
            input_file_id=file_id,
            provider_status=status,
        )
        .returning(LlmBatch.id)
    )
    return result.first() is not None


def update_batch(session: Session, batch_id: uuid.UUID, **values: Any) -> LlmBatch:
    row = session.get(LlmBatch, batch_id)
    assert row is not None, batch_id
    for name, value in values.items():
        setattr(row, name, value)
    return row


def claim_orphaned_batches(session: Session) -> list[LlmBatch]:
    """Sent batches whose job has ended, claimed for cancelling (status ``cancelling``)."""
    ended = select(Job.id).where(Job.status.not_in(ACTIVE))
    claimed = (
        update(LlmBatch)
        .where(LlmBatch.status == "submitted", LlmBatch.job_id.in_(ended))
        .values(status="cancelling")
        .returning(LlmBatch)
    )
    return list(session.scalars(claimed))


def stale_creating_batches(
    session: Session, job_id: uuid.UUID, created_before: datetime
) -> list[uuid.UUID]:
    claimed = (
        update(LlmBatch)
        .where(LlmBatch.job_id == job_id, LlmBatch.status == "creating")
        .where(LlmBatch.created_at < created_before)
        .values(status="abandoned")
        .returning(LlmBatch.id)
    )
    return list(session.scalars(claimed))


def mark_enqueued(
    session: Session, job_id: uuid.UUID, indices: Sequence[int], now: datetime
) -> None:
    if indices:
        session.execute(
            update(WorkItem)
            .where(WorkItem.job_id == job_id, WorkItem.item_index.in_(indices))
            .values(enqueued_at=now)
        )


def finish_items(
    session: Session, job_id: uuid.UUID, indices: Sequence[int], state: str, now: datetime
) -> None:
    if indices:
        session.execute(
            _update_items(session, job_id, indices).values(
                state=state, lease_owner=None, lease_expires_at=None, updated_at=now
            )
        )


def _update_items(session: Session, job_id: uuid.UUID, indices: Sequence[int]) -> Update:
    """An UPDATE of these items of the job: one statement text for any number of them."""
    return (
        update(WorkItem)
        .where(WorkItem.job_id == job_id, among(session, WorkItem.item_index, indices, Integer()))
        .execution_options(synchronize_session=False)
    )


def record_item_result(
    session: Session,
    job_id: uuid.UUID,
    index: int,
    state: str,
    result: dict[str, Any],
    now: datetime,
) -> bool:
    """Close an item with its result, once: False if a result was already recorded."""
    outcome = session.execute(
        update(WorkItem)
        .where(WorkItem.job_id == job_id, WorkItem.item_index == index)
        .where(WorkItem.result.is_(None))
        .values(state=state, result=result, lease_owner=None, lease_expires_at=None, updated_at=now)
    )
    return bool(outcome.rowcount)  # type: ignore[attr-defined]


def existing_documents(session: Session, job_id: uuid.UUID, indices: Sequence[int]) -> set[int]:
    if not indices:
        return set()
    return set(
        session.scalars(
            select(Document.item_index).where(
                Document.job_id == job_id,
                among(session, Document.item_index, indices, Integer()),
            )
        )
    )


def insert_documents(session: Session, rows: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
    """Write the items' document rows, one statement per shape of row (accepted, rejected,
    failed: a few); the ids written (an id already there, from an earlier delivery, is
    skipped). Rows of one shape go together so that a column a row does not set takes its
    default (SQL NULL for JSON, not JSON null).

    On Postgres the rows go in with ``COPY`` (``copy_rows``) unless one is already there,
    which only an earlier delivery of the same items makes happen: then as above."""
    table = Document.__table__
    if is_postgres(session) and copy_rows(session, table, rows):  # type: ignore[arg-type]
        return {row["id"] for row in rows}
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        shapes.setdefault(tuple(sorted(row)), []).append(row)
    statement = insert_ignoring_conflicts(session, table).returning(table.c.id)
    written: set[uuid.UUID] = set()
    for same in shapes.values():
        written.update(session.scalars(statement, same))
    return written


def claim_fingerprints(
    session: Session, dataset_id: uuid.UUID, claims: dict[str, uuid.UUID]
) -> dict[str, uuid.UUID]:
    """Register each text (by hash) for the dataset with its document: the owner of each,
    which is another document where the text was taken already. One statement, the rows in
    hash order, so two writers lock them in the same order."""
    if not claims:
        return {}
    if is_postgres(session):  # two array parameters: the statement's text is always the same
        shas = sorted(claims)
        rows = session.execute(
            text(
                "INSERT INTO content_fingerprint (dataset_id, content_sha256, document_id)"
                " SELECT :dataset_id, claim.sha, claim.document"
                " FROM unnest(CAST(:shas AS text[]), CAST(:documents AS uuid[]))"
                " WITH ORDINALITY AS claim (sha, document, n) ORDER BY claim.n"
                " ON CONFLICT (dataset_id, content_sha256)"
                " DO UPDATE SET document_id = content_fingerprint.document_id"
                " RETURNING content_sha256, document_id"
            ),
            {
                "dataset_id": dataset_id,
                "shas": array_literal(shas),
                "documents": array_literal(claims[sha] for sha in shas),
            },
        )
        return {sha: owner for sha, owner in rows}
    table = ContentFingerprint.__table__
    statement = dialect_insert(session, table)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.dataset_id, table.c.content_sha256],
        set_={"document_id": table.c.document_id},
    ).returning(table.c.content_sha256, table.c.document_id)
    params = [
        {"dataset_id": dataset_id, "content_sha256": sha, "document_id": claims[sha]}
        for sha in sorted(claims)
    ]
    return {sha: owner for sha, owner in session.execute(statement, params)}


def mark_duplicates(session: Session, duplicates: Sequence[dict[str, Any]]) -> None:
    """``{"id", "duplicate_of", "reason", "detail"}`` each: mark them duplicates at once."""
    if duplicates:
        session.execute(update(Document), [d | {"status": "duplicate"} for d in duplicates])


def release_fingerprints_of(session: Session, dataset_id: uuid.UUID, shas: Sequence[str]) -> None:
    """Undo this transaction's exact claims for texts that turned out to be near copies."""
    if shas:
        session.execute(
            delete(ContentFingerprint).where(
                ContentFingerprint.dataset_id == dataset_id,
                ContentFingerprint.content_sha256.in_(shas),
            )
        )


def add_to_tally(session: Session, job_id: uuid.UUID, increments: Sequence[Tally]) -> None:
    """Add outcomes to the job's counters, in the caller's transaction (UPSERT per bucket).

    One row per bucket, in bucket order: two writers of one job lock the rows they share in
    the same order, so one waits for the other instead of deadlocking.
    """
    rows = [
        {"job_id": job_id, "bucket": t.bucket} | {name: getattr(t, name) for name in COUNTERS}
        for t in combine(increments)
    ]
    if not rows:
        return
    table = JobTally.__table__
    statement = dialect_insert(session, table)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.job_id, table.c.bucket],
        set_={name: table.c[name] + statement.excluded[name] for name in COUNTERS},
    )
    session.execute(statement, rows)


def tallies(session: Session, job_id: uuid.UUID) -> list[Tally]:
    """A job's counters (the status read and the listing take them in their own statement)."""
    return _tallies(session.execute(_JOB_TALLIES, {"job_id": job_id}).scalar())


def accepted_and_in_flight(session: Session, job: Job) -> tuple[int, int]:
    """Accepted outcomes, and items planned but not finished, for a job row just read.

    Accepted and finished come from one statement, hence one snapshot: counted separately, an
    item that finishes between the two reads would be finished but not accepted, and the job
    would plan one item too many. Every finished item has exactly one outcome, so the items
    in flight are ``planned_items - finished``, with ``planned_items`` from the job row read
    *before* the counters: if a plan commits in between, the counters may include items the
    row does not, but then the caller's compare-and-set on ``planned_items`` fails instead of
    planning twice.
    """
    accepted = case((JobTally.bucket == ACCEPTED_BUCKET, JobTally.items), else_=0)
    row = session.execute(
        select(func.coalesce(func.sum(accepted), 0), func.coalesce(func.sum(JobTally.items), 0))
        .where(JobTally.job_id == job.id)
        .where(JobTally.bucket.startswith(OUTCOME_PREFIX))
    ).one()
    return int(row[0]), max(job.planned_items - int(row[1]), 0)


def cancel_items(session: Session, job_id: uuid.UUID, now: datetime) -> int:
    """Mark the job's pending and leased items cancelled (the job's window bounds them)."""
    result = session.execute(
        update(WorkItem)
        .where(WorkItem.job_id == job_id, WorkItem.state.in_(("pending", "leased")))
        .values(state="cancelled", lease_owner=None, lease_expires_at=None, updated_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def list_documents(
    session: Session,
    job_id: uuid.UUID,
    *,
    status: str | None,
    after_index: int,
    limit: int,
    reason: str | None = None,
) -> Sequence[Document]:
    query = select(Document).where(Document.job_id == job_id, Document.item_index > after_index)
    if status:
        query = query.where(Document.status == status)
    if reason:
        query = query.where(Document.reason == reason)
    return session.scalars(query.order_by(Document.item_index).limit(limit)).all()


def list_items(
    session: Session, job_id: uuid.UUID, *, after_index: int, limit: int
) -> Sequence[WorkItem]:
    return session.scalars(
        select(WorkItem)
        .where(WorkItem.job_id == job_id, WorkItem.item_index > after_index)
        .order_by(WorkItem.item_index)
        .limit(limit)
    ).all()


def get_document(session: Session, team_id: uuid.UUID, document_id: uuid.UUID) -> Document | None:
    return session.scalars(
        select(Document).where(Document.id == document_id, Document.team_id == team_id)
    ).one_or_none()


def generation_history(
    session: Session, team_id: uuid.UUID, provider: str, model: str | None, jobs: int = 50
) -> tuple[int, int, int, int]:
    """(items, accepted, calls, completion tokens) of the team's last ``jobs`` ended
    generation jobs on this provider and model: what its next job on them will likely do."""
    recent = session.execute(
        select(Job.id, Job.spec)
        .where(Job.team_id == team_id, Job.kind == "generate")
        .where(Job.status.in_(ENDED))
        .order_by(Job.created_at.desc())
        .limit(jobs * 4)
    ).all()
    same = [
        job_id
        for job_id, spec in recent
        if (spec.get("provider", "default"), spec.get("model")) == (provider, model)
    ][:jobs]
    if not same:
        return 0, 0, 0, 0
    rows = session.execute(
        select(
            JobTally.bucket,
            func.sum(JobTally.items),
            func.sum(JobTally.llm_calls),
            func.sum(JobTally.completion_tokens),
        )
        .where(JobTally.job_id.in_(same), JobTally.bucket.startswith(OUTCOME_PREFIX))
        .group_by(JobTally.bucket)
    ).all()
    items = sum(int(r[1] or 0) for r in rows)
    accepted = sum(int(r[1] or 0) for r in rows if r[0] == ACCEPTED_BUCKET)
    calls = sum(int(r[2] or 0) for r in rows)
    completion = sum(int(r[3] or 0) for r in rows)
    return items, accepted, calls, completion


def failed_documents(session: Session, job_id: uuid.UUID) -> list[tuple[int, str]]:
    """(item index, reason) of the job's failed documents, in item order."""
    rows = session.execute(
        select(Document.item_index, Document.reason)
        .where(Document.job_id == job_id, Document.status == "failed")
        .order_by(Document.item_index)
    )
    return [(index, reason or "") for index, reason in rows]


def forget_documents(session: Session, job_id: uuid.UUID, indices: Sequence[int]) -> None:
    """Delete the job's document rows of these items (failed ones, about to run again)."""
    if indices:
        session.execute(
            delete(Document).where(
                Document.job_id == job_id,
                among(session, Document.item_index, indices, Integer()),
            )
        )


def reopen_items(
    session: Session, job_id: uuid.UUID, indices: Sequence[int], now: datetime
) -> None:
    """Put finished items back to pending with no attempts and no result: they run anew."""
    if indices:
        session.execute(
            _update_items(session, job_id, indices).values(
                state="pending",
                attempts=0,
                lease_owner=None,
                lease_expires_at=None,
                result=null(),  # SQL NULL: None would store JSON null, a result
                updated_at=now,
            )
        )


def accepted_fingerprints(session: Session, job_id: uuid.UUID) -> list[Document]:
    """The job's accepted documents (whose texts a failed job released)."""
    return list(
        session.scalars(
            select(Document).where(Document.job_id == job_id, Document.status == "accepted")
        )
    )


def item_plan(session: Session, job_id: uuid.UUID, index: int) -> dict[str, Any] | None:
    return session.scalar(
        select(WorkItem.plan).where(WorkItem.job_id == job_id, WorkItem.item_index == index)
    )


ACTIVITY = (
    "accepted",
    "rejected",
    "duplicates",
    "failed",
    "llm_calls",
    "tokens",
    "cost_usd",
)


def add_activity(
    session: Session,
    team_id: uuid.UUID,
    job_id: uuid.UUID,
    minute: datetime,
    counts: dict[str, float],
) -> None:
    """Add to the team's and the job's counters of one minute (UPSERT), in the caller's
    transaction."""
    if not any(counts.values()):
        return
    values = {name: counts.get(name, 0) for name in ACTIVITY}
    for model, key, owner in (
        (ActivityMinute, "team_id", team_id),
        (JobMinute, "job_id", job_id),
    ):
        table = model.__table__
        statement = dialect_insert(session, table).values(**{key: owner}, minute=minute, **values)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c[key], table.c.minute],
            set_={name: table.c[name] + statement.excluded[name] for name in ACTIVITY},
        )
        session.execute(statement)
