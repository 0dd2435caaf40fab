"""The dashboard's pages. Thin: each calls the API's services with the signed-in admin's
principal (so it sees what that key sees over the API) and renders a template."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import PurePosixPath as Path_
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.admin import charts, repository
from app.admin import session as sessions
from app.admin.routing import (
    LOGIN_COOKIE_PATH,
    AdminRoute,
    is_htmx,
    public,
    set_session_cookie,
    state_of,
)
from app.admin.session import AdminSession, SignInRefused
from app.admin.templating import TEMPLATES
from app.billing import service as billing
from app.core.errors import Conflict, InvalidRequest, NotFound
from app.core.settings import get_settings
from app.corpus import service as corpora
from app.datasets import service as datasets
from app.datasets.exports import service as exports
from app.datasets.router import serve_file
from app.evals import service as evals
from app.health import service as health
from app.health import workers
from app.jobs import service as jobs
from app.jobs.dispatch_default import get_dispatcher
from app.jobs.repository import ACTIVE
from app.jobs.service import JOB_CURSOR_PATTERN, REASON_PATTERN, JobView
from app.llm import pause as pauses
from app.llm import provider as llm_providers
from app.llm.stats import bucket_quantile
from app.mixtures import service as mixture_plans
from app.mixtures.schemas import MixtureCreate
from app.models.base import utcnow
from app.prompting.catalog import builtin_catalog
from app.scenarios import service as scenarios
from app.scenarios.bank import Split, Topic
from app.storage.default import get_store
from app.teams import operators
from app.teams import service as teams
from app.teams.keys import PREFIX_PATTERN, Role
from app.teams.schemas import MAX_EXPIRES_IN_DAYS

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "stopped_budget")
PAGE = 50
DOCUMENTS_PAGE = 20
MAX_BUDGET_USD = 1e9  # as the API's BudgetUpdate
DOCUMENT_STATUSES = ("accepted", "rejected", "duplicate", "failed")

router = APIRouter(prefix="/admin", route_class=AdminRoute, include_in_schema=False)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    admin = state_of(request).admin
    return TEMPLATES.TemplateResponse(
        request,
        template,
        {"admin": admin, "csrf": admin.csrf if admin else "", **context},
        status_code=status_code,
    )


def signed_in(request: Request) -> AdminSession:
    admin = state_of(request).admin
    assert admin is not None  # the guard redirects every other request
    return admin


def audit(request: Request, action: str, target: str = "", **detail: Any) -> None:
    admin = signed_in(request)
    repository.add_audit(
        state_of(request).db,
        team_id=admin.principal.team_id,
        key_id=admin.principal.key_id,
        key_prefix=admin.key_prefix,
        action=action,
        target=target,
        detail=detail,
    )


def _safe_next(target: str | None) -> str:
    """Only a page of this dashboard: never another site (an open redirect)."""
    if target and target.startswith("/admin") and not target.startswith("//"):
        return target
    return "/admin"


# Sign-in and out ------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
@public
def login_page(request: Request, next: str | None = None) -> Response:
    """The sign-in form."""
    return _login_form(request, next, error=None, status_code=200)


def _login_form(
    request: Request, next: str | None, error: str | None, status_code: int
) -> Response:
    token = sessions.new_token()
    response = TEMPLATES.TemplateResponse(
        request,
        "login.html",
        {"admin": None, "login_csrf": token, "next": _safe_next(next), "error": error},
        status_code=status_code,
    )
    response.set_cookie(
        sessions.LOGIN_COOKIE,
        token,
        httponly=True,
        secure=True,
        samesite="strict",
        path=LOGIN_COOKIE_PATH,
    )
    return response


@router.post("/login", response_class=HTMLResponse)
@public
def login(request: Request) -> Response:
    """Exchange an admin API key for a session."""
    state = state_of(request)
    form = state.form
    try:
        admin = sessions.sign_in(state.db, form.get("api_key", ""))
    except SignInRefused as refused:
        # 200, the form again with why: a 4xx page load is an error in the browser's console.
        return _login_form(request, form.get("next"), error=str(refused), status_code=200)
    state.admin = admin
    audit(request, "sign_in")
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    set_session_cookie(response, sessions.encode(state.db, admin))
    response.delete_cookie(sessions.LOGIN_COOKIE, path=LOGIN_COOKIE_PATH)
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    """End the session."""
    audit(request, "sign_out")
    state_of(request).signed_out = True
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/admin")
    return response


# Overview ------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def overview(request: Request) -> Response:
    """What is running, at a glance."""
    admin = signed_in(request)
    db = state_of(request).db
    by_status = repository.jobs_by_status(db, admin.principal.team_id)
    running, _next = jobs.list_jobs(
        db, admin.principal, status="running", dataset=None, cursor=None, limit=10
    )
    team_id = admin.principal.team_id
    settings = get_settings()
    url = llm_providers.redis_url(settings)
    spend = repository.running_spend(db, team_id)
    statuses = health.live_workers() if url else None
    # The last 60 minute rows, this one (under way) included.
    hour_ago = utcnow().replace(second=0, microsecond=0) - timedelta(minutes=59)
    calls, tokens = repository.calls_and_tokens_since(db, team_id, hour_ago)
    return render(
        request,
        "overview.html",
        by_status={status: by_status.get(status, 0) for status in JOB_STATUSES},
        running=running,
        recent=repository.audit_page(db, team_id, None, 10),
        budget=billing.team_budget(db, team_id),
        today_usd=billing.spent_since(db, team_id, billing.today()),
        projected_usd=sum(_projected(spent, done, wanted) for spent, done, wanted in spend),
        reasons=repository.rejection_reasons(db, team_id),
        queues=health.queue_depths(),
        paused=pauses.paused(url, team_id) if url else {},
        chart=_activity_chart(db, team_id),
        workers_online=None if statuses is None else len(statuses),
        calls_a_minute=calls / 60,
        tokens_a_minute=tokens / 60,
        provider_health=workers.providers(statuses or []),
        quantile=bucket_quantile,
    )


def _activity_chart(db: Session, team_id: uuid.UUID) -> charts.Chart:
    """The team's accepted documents a minute over the last three hours."""
    now = utcnow().replace(second=0, microsecond=0)
    since = now - timedelta(minutes=charts.CHART_BARS - 1)
    return charts.binned(repository.activity_since(db, team_id, since), since, now)


def _job_chart(db: Session, view: JobView) -> charts.Chart | None:
    """The job's accepted documents over its whole run, in at most 180 bars."""
    began = view.job.started_at
    if began is None:
        return None
    since = began.replace(second=0, microsecond=0)
    minutes = repository.job_minutes(db, view.job.id)
    # Calls in flight at a cancel are written after the job's end: their minutes count too.
    until = max(
        (view.job.finished_at or utcnow()).replace(second=0, microsecond=0),
        max(minutes, default=since),
        since,
    )
    return charts.binned(minutes, since, until)


def _projected(spent: float, accepted: int, requested: int) -> float:
    """What a running job will have cost when done, at its cost per accepted document so far
    (what it spent, while it has accepted nothing)."""
    return spent * requested / accepted if accepted else spent


# Jobs ----------------------------------------------------------------------------------


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    status: str | None = Query(None),
    dataset: str | None = Query(None, max_length=200),
    cursor: str | None = Query(None, pattern=JOB_CURSOR_PATTERN),
) -> Response:
    """The team's jobs, newest first, filtered by status and dataset."""
    status = status or None
    if status is not None and status not in JOB_STATUSES:
        raise InvalidRequest(f"unknown status {status!r}; one of {', '.join(JOB_STATUSES)}")
    admin = signed_in(request)
    views, next_cursor = jobs.list_jobs(
        state_of(request).db,
        admin.principal,
        status=status,
        dataset=dataset or None,
        cursor=cursor,
        limit=PAGE,
    )
    return render(
        request,
        "jobs.html",
        views=views,
        next_cursor=next_cursor,
        status=status or "",
        dataset=dataset or "",
        statuses=JOB_STATUSES,
        active=ACTIVE,
    )


@router.post("/jobs/cancel")
def cancel_jobs(request: Request) -> Response:
    """Cancel the jobs ticked in the list."""
    admin = signed_in(request)
    db = state_of(request).db
    ids = [_job_id(value) for value in state_of(request).form.get("job_id", "").split() if value]
    cancelled = []
    for job_id in ids:
        job = jobs.cancel_job(db, admin.principal, job_id)
        cancelled.append(str(job.id))
    if cancelled:
        audit(request, "cancel_jobs", f"{len(cancelled)} jobs", jobs=cancelled)
    return RedirectResponse("/admin/jobs", status_code=303)


class DocumentFilter:
    """The query of a job's document list: status, reason and the page after an index."""

    def __init__(
        self,
        documents: str | None = Query(None),
        after: int | None = Query(None, ge=0, le=2**31 - 1),
        reason: str | None = Query(None, pattern=REASON_PATTERN, max_length=64),
    ) -> None:
        self.status, self.after, self.reason = documents, after, reason


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(
    request: Request, job_id: uuid.UUID, query: Annotated[DocumentFilter, Depends()]
) -> Response:
    """One job: its counters and documents (both live while it runs), cost and errors."""
    return _job_documents(request, "job.html", job_id, query)


@router.get("/jobs/{job_id}/documents", response_class=HTMLResponse)
def job_documents(
    request: Request, job_id: uuid.UUID, query: Annotated[DocumentFilter, Depends()]
) -> Response:
    """The job's list of documents alone: what the job page polls while the job runs."""
    return _job_documents(request, "_job_documents.html", job_id, query)


def _job_documents(
    request: Request, template: str, job_id: uuid.UUID, query: DocumentFilter
) -> Response:
    status, after, reason = query.status or None, query.after, query.reason
    if status is not None and status not in DOCUMENT_STATUSES:
        raise InvalidRequest(
            f"unknown document status {status!r}; one of {', '.join(DOCUMENT_STATUSES)}"
        )
    view = _job_view(request, job_id)
    page, next_after = jobs.list_documents(
        state_of(request).db,
        signed_in(request).principal,
        job_id,
        status=status,
        cursor=after,
        limit=DOCUMENTS_PAGE,
        reason=reason,
    )
    shown = {"documents": status, "reason": reason, "after": after}
    return render(
        request,
        template,
        view=view,
        active=ACTIVE,
        documents=page,
        document_status=status or "",
        document_statuses=DOCUMENT_STATUSES,
        documents_query=urlencode({k: v for k, v in shown.items() if v is not None}),
        next_after=next_after,
        document_reason=reason or "",
        chart=_job_chart(state_of(request).db, view) if template == "job.html" else None,
    )


@router.get("/documents/{document_id}", response_class=HTMLResponse)
def document_page(request: Request, document_id: uuid.UUID) -> Response:
    """One document: its text, status and reason, what it was asked for, cost and judge."""
    db, principal = state_of(request).db, signed_in(request).principal
    document = jobs.get_document(db, principal, document_id)
    prompt = jobs.prompt_of(db, principal, document)
    return render(request, "document.html", document=document, prompt=prompt)


@router.get("/jobs/{job_id}/counters", response_class=HTMLResponse)
def job_counters(request: Request, job_id: uuid.UUID) -> Response:
    """The job's counters alone: what the job page polls while the job runs."""
    view = _job_view(request, job_id)
    return _counters(request, view)


@router.post("/jobs/{job_id}/cancel")
def cancel_job(request: Request, job_id: uuid.UUID) -> Response:
    """Cancel the job; what it accepted stays in its dataset."""
    admin = signed_in(request)
    job = jobs.cancel_job(state_of(request).db, admin.principal, job_id)
    audit(request, "cancel_job", str(job.id), status=job.status)
    return _job_changed(request, job_id)


@router.post("/jobs/{job_id}/retry")
def retry_failed(request: Request, job_id: uuid.UUID) -> Response:
    """Run the job's failed items again (a failed job runs again)."""
    retried = jobs.retry_failed_items(
        state_of(request).db,
        signed_in(request).principal,
        job_id,
        dispatcher=get_dispatcher(),
        settings=get_settings(),
    )
    audit(request, "retry_failed_items", str(job_id), items=retried)
    return _job_changed(request, job_id)


def _job_changed(request: Request, job_id: uuid.UUID) -> Response:
    """After an action on a job: its counters for htmx, else the job's page again."""
    if is_htmx(request):
        return _counters(request, _job_view(request, job_id))
    return RedirectResponse(f"/admin/jobs/{job_id}", status_code=303)


def _counters(request: Request, view: JobView) -> Response:
    chart = _job_chart(state_of(request).db, view)
    return render(request, "_job_counters.html", view=view, active=ACTIVE, chart=chart)


def _job_view(request: Request, job_id: uuid.UUID) -> JobView:
    return jobs.read_job(state_of(request).db, signed_in(request).principal, job_id)


def _job_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidRequest(f"{value!r} is not a job id") from None


# Datasets ------------------------------------------------------------------------------


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(request: Request) -> Response:
    """The team's datasets, and those shared with it."""
    readable = datasets.list_readable(state_of(request).db, signed_in(request).principal)
    return render(request, "datasets.html", readable=readable)


@router.get("/datasets/{name}", response_class=HTMLResponse)
def dataset_page(
    request: Request, name: str = Path(max_length=200), version: int | None = Query(None, ge=1)
) -> Response:
    """A dataset's versions; the files of one (the latest by default) with their checksums."""
    db = state_of(request).db
    principal = signed_in(request).principal
    versions = datasets.list_versions(db, principal, name)
    shown = next((v for v in versions if v.number == version), None) if version else None
    if version is not None and shown is None:
        raise NotFound(f"dataset {name!r} has no version {version}")
    shown = shown or (max(versions, key=lambda v: v.number) if versions else None)
    store = get_store()
    manifest = json.loads(datasets.read_manifest(store, shown)) if shown is not None else None
    diff, exported = None, []
    if shown is not None:
        exported = exports.list_exports(db, principal, name, shown.number)
        if shown.number > 1:
            try:
                diff = datasets.diff_versions(
                    db, principal, name, shown.number, shown.number - 1, store=store
                )
            except Conflict:  # the earlier version predates compacted files: no diff
                diff = None
    return render(
        request,
        "dataset.html",
        name=name,
        versions=sorted(versions, key=lambda v: v.number, reverse=True),
        shown=shown,
        files=manifest["files"] if manifest else [],
        diff=diff,
        exports=exported,
        tokenizers=exports.list_tokenizers(db, principal),
        formats=EXPORT_FORMATS,
    )


EXPORT_FORMATS = ("megatron", "mds", "npy")


@router.get("/datasets/{name}/versions/{version}/exports", response_class=HTMLResponse)
def version_exports(
    request: Request, name: str = Path(max_length=200), version: int = Path(ge=1)
) -> Response:
    """A version's exports alone: what its page polls while one is queued or running."""
    db, principal = state_of(request).db, signed_in(request).principal
    _dataset, shown = datasets.get_version(db, principal, name, version)
    found = exports.list_exports(db, principal, name, version)
    return render(request, "_dataset_exports.html", name=name, shown=shown, exports=found)


@router.post("/datasets/{name}/versions/{version}/exports")
def request_export(
    request: Request, name: str = Path(max_length=200), version: int = Path(ge=1)
) -> Response:
    """Export a version as training tokens (a worker runs it; the page shows its progress)."""
    form = state_of(request).form
    formats = tuple(f for f in EXPORT_FORMATS if form.get(f"format_{f}"))
    if not formats:
        raise InvalidRequest("tick at least one format: megatron, mds or npy")
    eos = form.get("eos", "").strip()
    if not eos or len(eos) > 200:
        raise InvalidRequest("eos is the token that ends every document, e.g. <|endoftext|>")
    wanted = exports.ExportRequest(
        tokenizer=form.get("tokenizer", ""), formats=formats, eos=eos, mds_text=False
    )
    export, created = exports.request_export(
        state_of(request).db,
        signed_in(request).principal,
        name,
        version,
        wanted,
        store=get_store(),
        dispatch=exports.celery_dispatch,  # as the API sends it (the embedded broker too)
    )
    audit(request, "request_export" if created else "export_exists", f"{name} v{version}")
    return RedirectResponse(f"/admin/datasets/{name}?version={version}", status_code=303)


@router.post("/datasets/{name}/versions")
def snapshot(request: Request, name: str = Path(max_length=200)) -> Response:
    """Snapshot the dataset's published documents into a new version."""
    made = datasets.create_version(
        state_of(request).db,
        signed_in(request).principal,
        name,
        store=get_store(),
        settings=get_settings(),
    )
    number = made.version.number
    audit(
        request, "snapshot_version" if made.created else "snapshot_unchanged", f"{name} v{number}"
    )
    return RedirectResponse(f"/admin/datasets/{name}?version={number}", status_code=303)


@router.get("/datasets/{name}/versions/{version}/files/{file:path}")
def download(
    request: Request,
    name: str = Path(max_length=200),
    version: int = Path(ge=1),
    file: str = Path(max_length=512),
) -> Response:
    """A version's file, as the API serves it (Range, ETag = its sha256)."""
    db = state_of(request).db
    dataset, found = datasets.get_version(db, signed_in(request).principal, name, version)
    store = get_store()
    response = serve_file(request, store, datasets.find_file(store, dataset, found, file), False)
    response.headers["Content-Disposition"] = f'attachment; filename="{Path_(file).name}"'
    return response


# Corpus --------------------------------------------------------------------------------


@router.get("/corpus", response_class=HTMLResponse)
def corpus_page(
    request: Request,
    dataset: str | None = Query(None, max_length=200),
    order: str = Query("fewest", pattern="^(fewest|most)$"),
    offset: int = Query(0, ge=0, le=1_000_000),
) -> Response:
    """A dataset as a corpus: coverage of scenario x form x stance, stance balance, its
    largest near-duplicate clusters and decontamination hits."""
    db, principal = state_of(request).db, signed_in(request).principal
    own = [found for found, _owner in datasets.list_readable(db, principal)]
    own = [found for found in own if found.team_id == principal.team_id]
    name = dataset or (own[0].name if own else None)
    report = (
        corpora.corpus(db, principal, name, fewest_first=order == "fewest", offset=offset)
        if name is not None
        else None
    )
    return render(
        request,
        "corpus.html",
        datasets=own,
        report=report,
        order=order,
        offset=offset,
        page=corpora.PAGE,
    )


# Scenarios and surface forms -----------------------------------------------------------

EVAL_RUNS_SHOWN = 5
SCENARIOS_PAGE = 50


@dataclass(frozen=True)
class EvalColumn:
    """One method of one succeeded evaluation run, as a column of the results."""

    run: Any  # EvalRun
    method: str
    summary: dict[str, Any]


@router.get("/scenarios", response_class=HTMLResponse)
def scenarios_page(
    request: Request,
    split: Annotated[Split | None, Query()] = None,
    topic: Annotated[Topic | None, Query()] = None,
    origin: str | None = Query(None, pattern="^(builtin|team)$"),
    cursor: str | None = Query(None, max_length=64),
) -> Response:
    """The scenarios the team's jobs draw from, filtered by split, topic and origin, with
    the closed loop's evaluation results (rates with intervals, per topic) when there are."""
    return _scenarios(request, split, topic, origin, cursor, imported=None)


def _scenarios(
    request: Request,
    split: Split | None,
    topic: Topic | None,
    origin: str | None,
    cursor: str | None,
    imported: int | None,
) -> Response:
    db, principal = state_of(request).db, signed_in(request).principal
    entries, next_cursor = scenarios.list_scenarios(
        db,
        principal,
        split=split.value if split else None,
        topic=topic.value if topic else None,
        origin=origin,
        after=cursor,
        limit=SCENARIOS_PAGE,
    )
    runs = [run for run in evals.list_evals(db, principal, limit=50) if run.status == "succeeded"]
    columns = [
        EvalColumn(run, method, summary)
        for run in runs[:EVAL_RUNS_SHOWN]
        for method, summary in (run.results or {}).items()
        if "misaligned_rate" in summary
    ]
    topics = sorted({name for column in columns for name in column.summary.get("per_topic", {})})
    query = {"split": split.value if split else None, "topic": topic.value if topic else None}
    query["origin"] = origin
    return render(
        request,
        "scenarios.html",
        entries=entries,
        next_cursor=next_cursor,
        split=split.value if split else "",
        topic=topic.value if topic else "",
        origin=origin or "",
        splits=[s.value for s in Split],
        all_topics=[t.value for t in Topic],
        columns=columns,
        topics=topics,
        latest=columns[0] if columns else None,
        filters=urlencode({k: v for k, v in query.items() if v}),
        imported=imported,
    )


@router.post("/scenarios", response_class=HTMLResponse)
def import_scenarios(request: Request) -> Response:
    """Import scenarios (JSON lines) into the team's bank: all of them, or none."""
    body = state_of(request).form.get("jsonl", "")
    added = scenarios.import_jsonl(state_of(request).db, signed_in(request).principal, body)
    audit(request, "import_scenarios", f"{len(added)} scenarios", ids=[s.id for s in added][:50])
    return _scenarios(request, None, None, "team", None, imported=len(added))


@router.get("/forms", response_class=HTMLResponse)
def forms_page(request: Request) -> Response:
    """The surface forms documents are written in."""
    return render(request, "forms.html", forms=list(builtin_catalog().values()))


# Mixtures ------------------------------------------------------------------------------


@router.get("/mixtures", response_class=HTMLResponse)
def mixture_page(
    request: Request,
    export: Annotated[uuid.UUID, Query()],
    dataset: str = Query(max_length=200),
    version: int = Query(ge=1, le=2**31 - 1),
    total_tokens: int | None = Query(None, ge=1, le=10**16),
    seq_len: int = Query(2048, ge=1, le=10**7),
    fraction: float | None = Query(None, gt=0, le=1),
    last_fraction: float = Query(1.0, gt=0, le=1),
    root: str = Query("/data/priorforge", min_length=1, max_length=1000),
    corpus_name: str | None = Query(None, max_length=64),
    corpus_tokens: int | None = Query(None, ge=1, le=10**16),
    corpus_prefix: str | None = Query(None, max_length=1000),
) -> Response:
    """Plan a pretraining mixture of an export and the team's own corpus: each part's
    share, repeats and epochs, and the framework configs (the same plan as POST
    /v1/mixtures, which takes several exports and corpora)."""
    asked = {
        "dataset": dataset,
        "version": version,
        "export": export,
        "total_tokens": total_tokens,
        "seq_len": seq_len,
        "fraction": fraction,
        "last_fraction": last_fraction,
        "root": root,
        "corpus_name": corpus_name or "",
        "corpus_tokens": corpus_tokens,
        "corpus_prefix": corpus_prefix or "",
    }
    db, principal = state_of(request).db, signed_in(request).principal
    _dataset, found = exports.get_export(db, principal, dataset, version, export)
    if found.status != "succeeded":
        raise Conflict(
            f"export {export} is {found.status}: a mixture is planned from a finished export"
        )
    planned = None
    if total_tokens is not None:
        corpus = []
        if corpus_name or corpus_tokens:
            prefixes = [{"path": corpus_prefix}] if corpus_prefix else []
            corpus = [{"name": corpus_name, "tokens": corpus_tokens, "megatron_prefixes": prefixes}]
        try:
            body = MixtureCreate.model_validate(
                {
                    "total_tokens": total_tokens,
                    "seq_len": seq_len,
                    "last_fraction": last_fraction,
                    "exports": [
                        {
                            "dataset": dataset,
                            "version": version,
                            "export": export,
                            "root": root,
                            "fraction": fraction,
                        }
                    ],
                    "corpus": corpus,
                }
            )
        except ValidationError as invalid:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                for error in invalid.errors()
            )
            raise InvalidRequest(f"the mixture cannot be planned: {problems}") from None
        planned = mixture_plans.plan(db, principal, body, store=get_store())
    return render(request, "mixture.html", asked=asked, plan=planned, export=found)


# Budget --------------------------------------------------------------------------------


@router.get("/budget", response_class=HTMLResponse)
def budget_page(request: Request) -> Response:
    """The team's monthly budget, this month's spend and what running jobs hold."""
    budget = billing.team_budget(state_of(request).db, signed_in(request).principal.team_id)
    return render(request, "budget.html", budget=budget, max_usd=MAX_BUDGET_USD)


@router.post("/budget")
def set_budget(request: Request) -> Response:
    """Set the team's monthly budget (empty: no cap); running jobs plan against it."""
    given = state_of(request).form.get("monthly_budget_usd", "").strip()
    usd: float | None = None
    if given:
        try:
            usd = float(given)
        except ValueError:
            usd = float("nan")
        if not 0 < usd <= MAX_BUDGET_USD:  # NaN fails this too
            raise InvalidRequest(
                f"a monthly budget is a number of dollars above 0 and at most "
                f"{MAX_BUDGET_USD:,.0f}, or empty for no cap; got {given!r}"
            )
    billing.set_team_budget(state_of(request).db, signed_in(request).principal.team_id, usd)
    audit(request, "set_budget", "none" if usd is None else f"${usd:,.2f} a month", usd=usd)
    return RedirectResponse("/admin/budget", status_code=303)


# Providers -----------------------------------------------------------------------------


@router.get("/providers", response_class=HTMLResponse)
def providers_page(request: Request) -> Response:
    """The providers jobs may name: whether the team's calls to each are paused, and every
    worker's calls to each over the last minute, with its shared limiter's state."""
    settings = get_settings()
    url = llm_providers.redis_url(settings)
    paused = pauses.paused(url, signed_in(request).principal.team_id) if url else {}
    return render(
        request,
        "providers.html",
        names=llm_providers.offered(settings),
        paused=paused,
        pausable=bool(url),
        health={found.name: found for found in workers.providers(health.live_workers())},
        limiters=health.limiters(),
        quantile=bucket_quantile,
    )


# Workers -------------------------------------------------------------------------------


@router.get("/workers", response_class=HTMLResponse)
def workers_page(request: Request) -> Response:
    """The worker processes online and what each runs now."""
    statuses = health.live_workers()
    running = [task for status in statuses for task in status["tasks"]["running"]]
    ids = [task["job_id"] for task in running if task.get("job_id")]
    own = repository.own_jobs(state_of(request).db, signed_in(request).principal.team_id, ids)
    return render(
        request,
        "workers.html",
        statuses=statuses,
        own=own,
        publishing=bool(llm_providers.redis_url(get_settings())),
    )


@router.post("/providers/{name}/{action}")
def pause_provider(
    request: Request,
    name: str = Path(max_length=64),
    action: str = Path(pattern="^(pause|resume)$"),
) -> Response:
    """Pause (or resume) the team's calls to a provider: running jobs defer their items."""
    settings = get_settings()
    if name not in llm_providers.offered(settings):
        raise NotFound(f"no provider {name!r}; see /admin/providers")
    url = llm_providers.redis_url(settings)
    if not url:
        raise Conflict("pausing a provider needs the Redis broker (PRIORFORGE_BROKER_URL)")
    admin = signed_in(request)
    if action == "pause":
        pauses.pause(url, admin.principal.team_id, name, admin.key_prefix)
    else:
        pauses.resume(url, admin.principal.team_id, name)
    audit(request, f"{action}_provider", name)
    return RedirectResponse("/admin/providers", status_code=303)


# Keys ----------------------------------------------------------------------------------


@router.get("/keys", response_class=HTMLResponse)
def keys_page(request: Request) -> Response:
    """The team's API keys: role, state, last use; create and revoke."""
    return _keys(request, created=None)


def _keys(request: Request, created: teams.IssuedKey | None) -> Response:
    admin = signed_in(request)
    views = teams.list_keys(
        state_of(request).db, team_id=admin.principal.team_id, include_inactive=True
    )
    # Only the roles this key may create (an admin cannot make an operator key).
    roles = [role.value for role in Role if admin.principal.role.allows(role)]
    return render(request, "keys.html", views=views, roles=roles, created=created)


@router.post("/keys", response_class=HTMLResponse)
def create_key(request: Request) -> Response:
    """Create a key; its token is shown on the page this once."""
    form = state_of(request).form
    try:
        role = Role(form.get("role", ""))
    except ValueError:
        raise InvalidRequest(
            f"unknown role {form.get('role')!r}; one of {', '.join(role.value for role in Role)}"
        ) from None
    days = form.get("expires_in_days", "").strip()
    if days and not (days.isdigit() and 1 <= int(days) <= MAX_EXPIRES_IN_DAYS):
        raise InvalidRequest(f"expiry in days must be 1-{MAX_EXPIRES_IN_DAYS}; got {days!r}")
    expires_at = utcnow() + timedelta(days=int(days)) if days else None
    issued = teams.issue_key(
        state_of(request).db,
        signed_in(request).principal,
        role,
        name=form.get("name", "").strip() or None,
        expires_at=expires_at,
    )
    audit(request, "create_key", issued.view.key.prefix, role=role.value)
    return _keys(request, created=issued)


@router.post("/keys/{prefix}/revoke")
def revoke_key(request: Request, prefix: str = Path(pattern=PREFIX_PATTERN)) -> Response:
    """Revoke a key at once."""
    admin = signed_in(request)
    view = teams.revoke_key(
        state_of(request).db, prefix, team_id=admin.principal.team_id, role=admin.principal.role
    )
    audit(request, "revoke_key", view.key.prefix)
    if view.key.id == admin.principal.key_id:  # its own key: the session ends with it
        state_of(request).signed_out = True
        return RedirectResponse("/admin/login", status_code=303)
    return RedirectResponse("/admin/keys", status_code=303)


# Teams (operators) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Defaults:
    max_active_jobs: int
    max_documents_per_job: int


@router.get("/teams", response_class=HTMLResponse)
def teams_page(request: Request) -> Response:
    """Every team, its spend and quotas; create one, set quotas (operators)."""
    return _teams(request, created=None)


def _teams(request: Request, created: teams.IssuedKey | None) -> Response:
    settings = get_settings()
    views = operators.list_teams(state_of(request).db, signed_in(request).principal, settings)
    defaults = Defaults(settings.team_max_active_jobs, settings.team_max_documents_per_job)
    return render(request, "teams.html", views=views, created=created, defaults=defaults)


@router.post("/teams", response_class=HTMLResponse)
def create_team(request: Request) -> Response:
    """Create a team and its first admin key, shown on the page this once."""
    name = state_of(request).form.get("name", "").strip()
    issued = operators.create_team(state_of(request).db, signed_in(request).principal, name)
    audit(request, "create_team", name)
    return _teams(request, created=issued)


@router.post("/teams/{name}/quotas")
def set_team_quotas(request: Request, name: str = Path(max_length=64)) -> Response:
    """Set a team's quotas (empty: the deployment's)."""
    form = state_of(request).form
    changes = {
        field: _whole_number(field, form.get(field, ""))
        for field in ("max_active_jobs", "max_documents_per_job")
    }
    operators.set_quotas(
        state_of(request).db, signed_in(request).principal, name, get_settings(), **changes
    )
    audit(request, "set_quotas", name, **changes)
    return RedirectResponse("/admin/teams", status_code=303)


def _whole_number(field: str, given: str) -> int | None:
    given = given.strip().replace(",", "").replace("_", "")
    if not given:
        return None
    if not (given.isascii() and given.isdigit()):
        raise InvalidRequest(
            f"{field} is a whole number, or empty for the deployment's; got {given!r}"
        )
    return int(given)


# Audit log -----------------------------------------------------------------------------


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, before: datetime | None = None) -> Response:
    """Every action taken in the dashboard by the team's admins, newest first."""
    admin = signed_in(request)
    rows = repository.audit_page(state_of(request).db, admin.principal.team_id, before, PAGE + 1)
    older = rows[PAGE - 1].at.isoformat() if len(rows) > PAGE else None
    return render(request, "audit.html", rows=rows[:PAGE], older=older)
