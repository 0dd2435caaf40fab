"""Job use cases: submit, read, cancel, and the state machine that drives a job to the end.

The job finishes by guarded UPDATE when it has the requested accepted count (after its shards
are published) or when its attempt budget is spent; nothing here relies on chords or on a
single worker staying alive.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.billing import estimate as billing
from app.billing import service as budgets
from app.billing.budget import Cap, affordable
from app.billing.estimate import Estimate
from app.core.db import after_commit, session_scope
from app.core.errors import (
    Conflict,
    IdempotencyKeyReused,
    InvalidRequest,
    NotFound,
    OverQuota,
    PriorForgeError,
)
from app.core.settings import Settings
from app.datasets import service as datasets
from app.generation.context import JobContext
from app.jobs import repository, tally
from app.jobs.dispatch import Dispatcher, chunk_ranges
from app.jobs.planner import PlannedItem
from app.jobs.repository import JobRecord
from app.jobs.spec import JobSpec
from app.jobs.tally import (
    COUNTERS,
    JudgeReport,
    Progress,
    Tally,
    Usage,
    document_tallies,
    outcome_bucket,
)
from app.llm.client import estimate_tokens
from app.llm.provider import ProviderConfig, resolve_provider
from app.models import Document, Job, WorkItem
from app.models.base import utcnow
from app.storage import ObjectStore
from app.teams.service import Principal

log = logging.getLogger(__name__)

GENERATE = "generate"
EXTRACT_SCENARIOS = "extract_scenarios"


@dataclass(frozen=True)
class JobView:
    job: JobRecord
    dataset: str | None
    progress: Progress
    usage: Usage
    judge: JudgeReport | None = None
    # Generation and judge together, and the worst case of the items in flight.
    spent_usd: float = 0.0
    reserved_usd: float = 0.0


def submit_job(
    session: Session,
    principal: Principal,
    spec: JobSpec,
    *,
    idempotency_key: str | None,
    dispatcher: Dispatcher,
    settings: Settings,
) -> tuple[Job, bool]:
    """Create a generation job (or return the one this idempotency key made). (job, created)."""
    replayed = replay(session, principal, idempotency_key, spec.request_sha256())
    if replayed is not None:
        return replayed, False
    check_quotas(session, principal, spec.documents, settings)
    provider = resolve_provider(settings, spec.provider, spec.model)  # fail now, not later
    judge = (
        resolve_provider(settings, spec.judge.provider, spec.judge.model)
        if spec.judge.enabled
        else None
    )
    if spec.batch:
        check_batch(spec, provider)
        provider = provider.batched()
    dataset = datasets.ensure_dataset(session, principal.team_id, spec.dataset)
    job = new_job(
        principal,
        "generate",
        spec.to_json(),
        spec.request_sha256(),
        idempotency_key,
        requested=spec.documents,
        max_items=spec.max_items,
        dataset_id=dataset.id,
        name=spec.name,
    )
    context = JobContext.for_job(job, session)  # validates the scenario and form selection
    job.reserve_usd_per_item = _reserve_per_item(context, spec, provider, judge)
    check_budgets(session, job)
    stored, created = insert_job(session, principal, job)
    if created:
        # One chunk only, so that a submission costs the same whatever the job's size: the
        # worker that starts the job plans the rest of the window (advance_job), and every
        # finished chunk tops it up again.
        count = min(spec.documents, settings.plan_ahead_items, settings.chunk_size)
        _plan_more(session, job, context, count, dispatcher, settings, in_flight=0)
    return stored, created


def check_batch(spec: JobSpec, provider: ProviderConfig) -> None:
    if not provider.batch_api:
        raise Conflict(
            f"provider {spec.provider!r} does not take batches on this server; drop batch, or "
            "use a provider with batch = true in the providers file (PRIORFORGE_LLM_BATCH_API "
            "for the default one)"
        )
    if spec.judge.enabled:
        raise Conflict(
            "the stance judge reads each document as it arrives and cannot run in batch "
            "mode; set judge.enabled to false, or drop batch"
        )


# Prompts the reservation is measured on: the job's first items, across its scenarios and forms.
RESERVE_SAMPLE = 64


def _reserve_per_item(
    context: JobContext, spec: JobSpec, provider: ProviderConfig, judge: ProviderConfig | None
) -> float:
    """The most one of the job's items can cost (0 on free models: nothing to reserve)."""
    priced = provider.cost_usd(1_000_000, 1_000_000) > 0 or (
        judge is not None and judge.cost_usd(1_000_000, 1_000_000) > 0
    )
    if not priced:
        return 0.0
    sample = context.plan(0, min(RESERVE_SAMPLE, spec.max_items))
    prompt = max(estimate_tokens(context.render(item).messages, 0) for item in sample)
    return budgets.reserve_per_item(
        provider,
        prompt_tokens=prompt,
        max_tokens=spec.sampling.max_tokens,
        judge=judge,
        judge_max_tokens=spec.judge.max_tokens,
    )


def check_budgets(session: Session, job: Job) -> None:
    """409 when the job's budgets cannot pay for even one item's worst case."""
    allowed, binding = affordable(1, job.reserve_usd_per_item, budgets.job_caps(session, job, 0))
    if allowed or binding is None:
        return
    worst = f"one item may cost up to ${job.reserve_usd_per_item:.6f}"
    if binding.what == "the job's budget":
        raise Conflict(
            f"budget_usd ${binding.cap_usd:.6f} cannot pay for one item: {worst} (its prompt "
            "and sampling.max_tokens); raise budget_usd or lower sampling.max_tokens"
        )
    raise Conflict(
        f"{binding.what} is used up: ${binding.spent_usd:.4f} spent and "
        f"${binding.reserved_usd:.4f} held by running jobs of ${binding.cap_usd:.4f}, and "
        f"{worst}; raise it with PUT /v1/budget, or wait for the running jobs to end"
    )


QUOTA_RETRY_SECONDS = 30


def check_quotas(
    session: Session, principal: Principal, documents: int, settings: Settings
) -> None:
    """A team's limits on one job's size (409: ask for less) and on jobs at once (429: wait
    for one to end)."""
    # Submissions of one team queue up on its row here, so concurrent ones cannot all pass
    # a count that each of them would take past the quota.
    max_active, max_documents = repository.lock_team(session, principal.team_id)
    max_documents = max_documents or settings.team_max_documents_per_job
    if documents > max_documents:
        raise Conflict(
            f"documents: {documents} is over this team's quota of {max_documents} per job; "
            "split it into several jobs"
        )
    active = repository.count_active_jobs(session, principal.team_id)
    if active >= (max_active or settings.team_max_active_jobs):
        raise OverQuota(
            f"this team has {active} jobs queued or running, its quota; submit again when "
            "one has ended (or cancel one)",
            retry_after=QUOTA_RETRY_SECONDS,
        )


ESTIMATE_SAMPLE = 32


def estimate_job(
    session: Session, principal: Principal, spec: JobSpec, settings: Settings
) -> Estimate:
    """What ``spec`` would cost, before anything runs: nothing is stored or sent."""
    from app.prompting.service import preview

    provider = resolve_provider(settings, spec.provider, spec.model)
    judge = (
        resolve_provider(settings, spec.judge.provider, spec.judge.model)
        if spec.judge.enabled
        else None
    )
    if spec.batch:
        check_batch(spec, provider)
        provider = provider.batched()
    rendered = preview(session, principal, spec, min(ESTIMATE_SAMPLE, spec.max_items))
    per_call = sum(estimate_tokens(p.prompt.messages, 0) for p in rendered) / max(1, len(rendered))
    items, accepted, calls, completion = repository.generation_history(
        session, principal.team_id, spec.provider, spec.model
    )
    return billing.estimate(
        documents=spec.documents,
        max_items=spec.max_items,
        max_tokens=spec.sampling.max_tokens,
        prompt_tokens_per_call=per_call,
        length_words=(spec.length_words.min, spec.length_words.max),
        history=billing.History(items, accepted, calls, completion),
        prices=billing.Prices(provider.price_prompt_per_mtok, provider.price_completion_per_mtok),
        judge_prices=(
            billing.Prices(judge.price_prompt_per_mtok, judge.price_completion_per_mtok)
            if judge
            else None
        ),
    )


def replay(
    session: Session, principal: Principal, idempotency_key: str | None, request_sha256: str
) -> Job | None:
    """The job an idempotency key already made (422 if it was made from another request)."""
    if not idempotency_key:
        return None
    existing = repository.get_job_by_idempotency_key(session, principal.team_id, idempotency_key)
    return None if existing is None else _replay(existing, request_sha256)


def new_job(
    principal: Principal,
    kind: str,
    spec: dict[str, object],
    request_sha256: str,
    idempotency_key: str | None,
    *,
    requested: int,
    max_items: int,
    dataset_id: uuid.UUID | None,
    name: str | None,
) -> Job:
    return Job(
        id=uuid.uuid4(),
        team_id=principal.team_id,
        dataset_id=dataset_id,
        kind=kind,
        name=name,
        spec=spec,
        status="queued",
        idempotency_key=idempotency_key,
        request_sha256=request_sha256,
        requested=requested,
        max_items=max_items,
        planned_items=0,
    )


def insert_job(session: Session, principal: Principal, job: Job) -> tuple[Job, bool]:
    try:
        with session.begin_nested():
            session.add(job)
            session.flush()
    except IntegrityError:
        # A concurrent request with the same idempotency key won the insert.
        replayed = replay(session, principal, job.idempotency_key, job.request_sha256 or "")
        if replayed is None:
            raise
        return replayed, False
    return job, True


def add_items(
    session: Session,
    job: Job,
    plans: list[dict[str, object]],
    dispatcher: Dispatcher,
    settings: Settings,
) -> None:
    """Plan all of a job's items at once (jobs that never re-plan, e.g. extraction)."""
    if not repository.advance_planned(session, job.id, job.planned_items, len(plans)):
        return
    repository.add_work_items(session, job.id, plans, utcnow())
    set_committed_value(job, "planned_items", len(plans))  # what advance_planned wrote
    _dispatch_after_commit(session, dispatcher, job.id, range(len(plans)), settings)


def _replay(job: Job, request_sha256: str) -> Job:
    if job.request_sha256 != request_sha256:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used for a different job spec; "
            "send a new key for a new job",
            job_id=str(job.id),
        )
    return job


def _plan_more(
    session: Session,
    job: Job,
    context: JobContext,
    count: int,
    dispatcher: Dispatcher,
    settings: Settings,
    *,
    in_flight: int,
) -> tuple[int, Cap | None]:
    """Plan up to ``count`` more items, unless another worker planned since ``job`` was read,
    and as many as the job's budgets leave room for: (items planned, the budget that kept
    it from planning more, if one did)."""
    start = job.planned_items
    count = min(count, job.max_items - start)
    binding = None
    if count > 0:
        count, binding = budgets.plannable(session, job, in_flight, count)
    if count <= 0:
        return 0, binding
    if not repository.advance_planned(session, job.id, start, start + count):
        return 0, None  # another worker planned first: it is not the budget that stopped us
    now = utcnow()
    items = context.plan(start, count)
    repository.add_work_items(session, job.id, [item.to_json() for item in items], now)
    set_committed_value(job, "planned_items", start + count)  # what advance_planned wrote
    _dispatch_after_commit(session, dispatcher, job.id, range(start, start + count), settings)
    return count, binding


def redispatch(
    session: Session,
    dispatcher: Dispatcher,
    job_id: uuid.UUID,
    indices: list[int],
    settings: Settings,
) -> None:
    """Send planned items again (their messages, or their batch, were lost), once committed."""
    repository.mark_enqueued(session, job_id, indices, utcnow())
    _dispatch_after_commit(session, dispatcher, job_id, indices, settings)


def _dispatch_after_commit(
    session: Session,
    dispatcher: Dispatcher,
    job_id: uuid.UUID,
    indices: range | list[int],
    settings: Settings,
) -> None:
    ranges = chunk_ranges(indices, settings.chunk_size)

    def send() -> None:
        for start, end in ranges:
            dispatcher.dispatch(job_id, start, end)

    after_commit(session, send)


def get_job(session: Session, principal: Principal, job_id: uuid.UUID) -> Job:
    job = repository.get_job(session, job_id, principal.team_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


def read_job(session: Session, principal: Principal, job_id: uuid.UUID) -> JobView:
    """One of the team's jobs as the API shows it: one statement, whatever its size."""
    found = repository.get_job_read(session, job_id, principal.team_id)
    if found is None:
        raise NotFound(f"job {job_id} not found")
    job, dataset_name, tallies = found
    return view(session, job, dataset_name, tallies)


def view(
    session: Session,
    job: Job | JobRecord,
    dataset_name: str | None = None,
    tallies: list[Tally] | None = None,
) -> JobView:
    """A job's progress, usage and judge report, read from its counters (never its items)."""
    if isinstance(job, Job):
        job = JobRecord.of(job)
    if tallies is None:
        tallies = repository.tallies(session, job.id)
    progress, usage = tally.progress_and_usage(
        tallies, requested=job.requested, planned=job.planned_items, status=job.status
    )
    if dataset_name is None and job.dataset_id is not None:
        dataset_name = repository.dataset_names(session, {job.dataset_id}).get(job.dataset_id)
    judged = job.spec.get("judge", {}).get("enabled")
    judge = tally.judge_report(tallies) if judged else None
    return JobView(
        job=job,
        dataset=dataset_name,
        progress=progress,
        usage=usage,
        judge=judge,
        spent_usd=sum(t.cost_usd for t in tallies),
        reserved_usd=progress.in_flight * job.reserve_usd_per_item,
    )


def list_jobs(
    session: Session,
    principal: Principal,
    *,
    status: str | None,
    dataset: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[JobView], str | None]:
    before = _decode_cursor(cursor) if cursor else None
    dataset_id = None
    if dataset:
        found = datasets.find_dataset(session, principal.team_id, dataset)
        if found is None:
            return [], None
        dataset_id = found.id
    rows = repository.list_jobs(
        session,
        principal.team_id,
        status=status,
        dataset_id=dataset_id,
        before=before,
        limit=limit + 1,
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1][0]
        next_cursor = job_cursor(last.created_at, last.id)
    # One statement for the page with its dataset names and counters, whatever its length.
    return [view(session, job, name, tallies) for job, name, tallies in rows], next_cursor


# A job page's cursor: the last job's creation time in microseconds since the epoch and its
# id. Every string of this shape decodes (16 digits reach the year 2286), so the API can
# document it exactly and never fail on one.
JOB_CURSOR_PATTERN = r"^[0-9]{1,16}-[0-9a-f]{32}$"
REASON_PATTERN = "^[a-z][a-z0-9_]*$"  # a document's reason: too_short, near, ...
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def job_cursor(created_at: datetime, job_id: uuid.UUID) -> str:
    return f"{(created_at - _EPOCH) // timedelta(microseconds=1)}-{job_id.hex}"


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    if not re.fullmatch(JOB_CURSOR_PATTERN, cursor):
        raise InvalidRequest(f"malformed cursor {cursor!r}; pass next_cursor back unchanged")
    micros, job_id = cursor.split("-")
    return _EPOCH + timedelta(microseconds=int(micros)), uuid.UUID(hex=job_id)


def cancel_job(session: Session, principal: Principal, job_id: uuid.UUID) -> Job:
    """Stop a queued or running job: its items that never ran are cancelled, and what it has
    accepted stays in the dataset (its texts keep their place in the dedup index)."""
    job = get_job(session, principal, job_id)
    if end_job(session, job.id, "cancelled"):
        session.refresh(job)
    return job


def retry_failed_items(
    session: Session,
    principal: Principal,
    job_id: uuid.UUID,
    *,
    dispatcher: Dispatcher,
    settings: Settings,
) -> int:
    """Run a job's failed items again (e.g. after a provider outage); how many.

    Their failed documents are removed and their counts taken off the job's counters (what
    their calls cost stays counted); the items go back to pending and are sent to the
    workers once this commits. A failed job runs again: its accepted texts, released when
    it failed, are claimed back, and one that another job took meanwhile becomes a
    duplicate of it. A queued or running job simply gets its items back.
    """
    job = get_job(session, principal, job_id)
    if job.kind != GENERATE or job.status not in ("queued", "running", "failed"):
        raise Conflict(
            f"job {job.id} is a {job.kind} job that is {job.status}: only a generation job "
            "that is queued, running or failed has failed items to retry"
        )
    failed = repository.failed_documents(session, job.id)
    if not failed:
        return 0
    now = utcnow()
    indices = [index for index, _reason in failed]
    if job.status == "failed":
        if not repository.transition(
            session, job.id, ("failed",), status="running", error=None, finished_at=None,
            updated_at=now,
        ):  # fmt: skip
            raise Conflict(f"job {job.id} changed while retrying: look at it again")
        _claim_back(session, job)
    repository.forget_documents(session, job.id, indices)
    reasons = Counter(reason for _index, reason in failed)
    repository.add_to_tally(
        session,
        job.id,
        [Tally(outcome_bucket("failed", reason), items=-n) for reason, n in reasons.items()],
    )
    repository.reopen_items(session, job.id, indices, now)
    redispatch(session, dispatcher, job.id, indices, settings)
    return len(indices)


def _claim_back(session: Session, job: Job) -> None:
    """A failed job running again takes its accepted texts back from the dedup index; a text
    another job took meanwhile makes this job's document a duplicate of that one."""
    accepted = repository.accepted_fingerprints(session, job.id)
    claims = {d.content_sha256: d.id for d in accepted if d.content_sha256}
    if job.dataset_id is None or not claims:
        return
    owners = repository.claim_fingerprints(session, job.dataset_id, claims)
    moved: list[Tally] = []
    duplicates: list[dict[str, Any]] = []
    for document in accepted:
        owner = owners.get(document.content_sha256 or "")
        if owner is None or owner == document.id:
            continue
        values = {c.name: getattr(document, c.name) for c in Document.__table__.columns}
        moved += [
            t._replace(**{n: -getattr(t, n) for n in COUNTERS}) for t in document_tallies(values)
        ]
        moved += document_tallies(values | {"status": "duplicate", "reason": "exact"})
        duplicates.append(
            {"id": document.id, "duplicate_of": owner, "reason": "exact",
             "detail": "its text was taken by another job while this one had failed"}
        )  # fmt: skip
    repository.mark_duplicates(session, duplicates)
    repository.add_to_tally(session, job.id, moved)


def advance_job(
    session: Session,
    job_id: uuid.UUID,
    *,
    dispatcher: Dispatcher,
    settings: Settings,
    store: ObjectStore,
) -> str:
    """Move a running job on: finish it, top up its window of planned items, or fail it.

    Reads the job row and its counters, never its items or documents: it runs after every
    chunk. Items still wanted are planned up to ``plan_ahead_items`` in flight.
    """
    job = repository.get_job(session, job_id)
    if job is None or job.status != "running":
        return job.status if job else "missing"
    # The job row is read before the counts: a plan committed after our counts were taken
    # then makes our compare-and-set on planned_items fail instead of planning twice.
    accepted, in_flight = repository.accepted_and_in_flight(session, job)
    if job.kind == EXTRACT_SCENARIOS:
        return _advance_extraction(session, job, in_flight)
    if accepted >= job.requested:
        return finalize_job(session, job, settings=settings, store=store)
    missing = job.requested - accepted - in_flight
    if missing > 0 and job.planned_items < job.max_items:
        window = settings.plan_ahead_items - in_flight
        if window > 0:
            context = JobContext.for_job(job, session)
            planned, binding = _plan_more(
                session, job, context, min(missing, window), dispatcher, settings,
                in_flight=in_flight,
            )  # fmt: skip
            if (
                binding is not None
                and planned == 0
                and in_flight == 0
                # Items other jobs of the team hold come back: wait for them, not stop.
                and binding.reserved_usd <= 0
                # Still as read: no other worker planned meanwhile (this locks the row).
                and repository.advance_planned(
                    session, job.id, job.planned_items, job.planned_items
                )
            ):
                # Nothing in flight and no room for another item: stop, and publish.
                return finalize_job(
                    session, job, settings=settings, store=store,
                    status="stopped_budget", error=binding.reached(),
                )  # fmt: skip
        return job.status
    if in_flight == 0:
        reasons = view(session, job).progress
        end_job(
            session,
            job.id,
            "failed",
            error=(
                f"attempt budget exhausted: {accepted} of {job.requested} documents accepted "
                f"after {job.planned_items} attempts (rejected: {reasons.rejected or {}}, "
                f"duplicates: {reasons.duplicates}, failed: {reasons.failed}); raise "
                "max_attempts_factor or relax the gates"
            ),
        )
        return "failed"
    return job.status


def _advance_extraction(session: Session, job: Job, in_flight: int) -> str:
    """An extraction job ends when every source has a result; it publishes no shards."""
    if in_flight:
        return job.status
    progress = view(session, job).progress
    if progress.scenarios_extracted == 0:
        end_job(
            session,
            job.id,
            "failed",
            error=(
                f"no valid scenario came out of {job.requested} source(s) "
                f"(rejected: {progress.rejected}, failed: {progress.failed}); "
                "see each item's errors in GET /v1/jobs/{id}/items"
            ),
        )
        return "failed"
    now = utcnow()
    repository.transition(
        session, job.id, ("running",), status="succeeded", finished_at=now, updated_at=now
    )
    return "succeeded"


def finalize_job(
    session: Session,
    job: Job,
    *,
    settings: Settings,
    store: ObjectStore,
    status: str = "succeeded",
    error: str | None = None,
) -> str:
    """Publish the job's accepted documents as shards, then mark it ``status``: succeeded,
    or stopped_budget when a budget ended it first.

    The shard rows and the status change commit together: if the job was cancelled while
    its shards were being written, the rows are rolled back and nothing is published.
    """
    now = utcnow()
    stale = now - timedelta(seconds=settings.lease_seconds)
    if not repository.claim_finalization(session, job.id, now, stale):
        return job.status
    session.commit()  # the claim is visible to other workers before the slow part starts

    claim = [now]

    def still_mine() -> None:
        renewed = utcnow()
        with session_scope() as other:
            if not repository.renew_finalization(other, job.id, claim[0], renewed):
                raise FinalizationLost(f"job {job.id} was cancelled or re-claimed")
        claim[0] = renewed

    try:
        datasets.publish_job(session, job, store=store, settings=settings, renew=still_mine)
    except FinalizationLost:
        session.rollback()
        return _status(session, job.id)
    finished = utcnow()
    if repository.transition(
        session,
        job.id,
        ("running",),
        status=status,
        finished_at=finished,
        updated_at=finished,
        error=error,
    ):
        log.info("job %s %s%s", job.id, status, f": {error}" if error else "")
        return status
    session.rollback()  # cancelled meanwhile: its shards must not be published
    return _status(session, job.id)


class FinalizationLost(Exception):
    pass


def _status(session: Session, job_id: uuid.UUID) -> str:
    job = repository.get_job(session, job_id)
    return job.status if job else "missing"


def end_job(session: Session, job_id: uuid.UUID, status: str, error: str | None = None) -> bool:
    """Fail or cancel a queued or running job.

    A failed job's texts no longer block dedup. A cancelled job keeps them, as its accepted
    documents stay publishable; its pending and leased items become ``cancelled`` (a result
    that still arrives for a leased one is written and counted, and closes it as usual).
    """
    now = utcnow()
    if not repository.transition(
        session,
        job_id,
        ("queued", "running"),
        status=status,
        finished_at=now,
        updated_at=now,
        error=error,
    ):
        return False
    if status == "cancelled":
        repository.cancel_items(session, job_id, now)
    else:
        repository.release_fingerprints(session, job_id)
    return True


def reconcile_job(
    session: Session,
    job_id: uuid.UUID,
    *,
    dispatcher: Dispatcher,
    settings: Settings,
    store: ObjectStore,
) -> None:
    """Recover from lost workers and lost messages; safe to run from any number of workers."""
    now = utcnow()
    interval = timedelta(seconds=settings.reconcile_interval_seconds)
    if not repository.claim_reconcile(session, job_id, now, now - interval * 0.9):
        return
    job = repository.get_job(session, job_id)
    if job is None:
        return
    expired = repository.expire_stale_leases(session, job_id, now)
    stalled: list[int] = []
    stall = timedelta(seconds=settings.stall_seconds)
    if job.updated_at < now - stall and not dispatcher.backlog():
        # No worker has touched this job for a long time, items are pending, and the queue
        # is empty (or cannot be read): their messages were lost, e.g. with a worker that
        # died holding them, or with the broker. A queue with a backlog means they wait.
        stalled = repository.stale_pending(
            session, job_id, now - stall, settings.stall_redispatch_max_items
        )
    redo = sorted(set(expired) | set(stalled))
    if redo:
        log.warning(
            "job %s: re-dispatching %d items (expired leases: %d)", job_id, len(redo), len(expired)
        )
        redispatch(session, dispatcher, job_id, redo, settings)
    if job.status == "running":
        advance_job(session, job_id, dispatcher=dispatcher, settings=settings, store=store)


def active_job_ids(session: Session) -> list[uuid.UUID]:
    return list(repository.active_job_ids(session))


def list_documents(
    session: Session,
    principal: Principal,
    job_id: uuid.UUID,
    *,
    status: str | None,
    cursor: int | None,
    limit: int,
    reason: str | None = None,
) -> tuple[list[Document], str | None]:
    job = get_job(session, principal, job_id)
    after = _index_cursor(cursor)
    documents = list(
        repository.list_documents(
            session, job.id, status=status, after_index=after, limit=limit + 1, reason=reason
        )
    )
    items = documents[:limit]
    return items, (str(items[-1].item_index) if len(documents) > limit else None)


def list_items(
    session: Session, principal: Principal, job_id: uuid.UUID, *, cursor: int | None, limit: int
) -> tuple[list[WorkItem], str | None]:
    job = get_job(session, principal, job_id)
    after = _index_cursor(cursor)
    items = list(repository.list_items(session, job.id, after_index=after, limit=limit + 1))
    page = items[:limit]
    return page, (str(page[-1].item_index) if len(items) > limit else None)


def _index_cursor(cursor: int | None) -> int:
    """Pages start after the cursor's item index (the router bounds it to 0..2**31-1)."""
    return -1 if cursor is None else cursor


def get_document(session: Session, principal: Principal, document_id: uuid.UUID) -> Document:
    document = repository.get_document(session, principal.team_id, document_id)
    if document is None:
        raise NotFound(f"document {document_id} not found")
    return document


@dataclass(frozen=True)
class PromptView:
    messages: list[dict[str, str]]
    exact: bool  # the same hash as the prompt the document was generated from
    template_version: str


def prompt_of(session: Session, principal: Principal, document: Document) -> PromptView | None:
    """The chat messages a document's item renders to now, checked against the hash recorded
    when it was generated; None for a document no prompt was sent for, or whose scenario or
    form no longer resolves."""
    if not document.prompt_sha256:
        return None
    job = get_job(session, principal, document.job_id)
    plan = repository.item_plan(session, job.id, document.item_index)
    if job.kind != GENERATE or plan is None:
        return None
    try:
        rendered = JobContext.for_job(job, session).render(PlannedItem.from_json(plan))
    except (KeyError, PriorForgeError, ValidationError):  # e.g. a scenario removed since
        return None
    exact = rendered.sha256 == document.prompt_sha256
    return PromptView(rendered.messages, exact, rendered.template_version)
