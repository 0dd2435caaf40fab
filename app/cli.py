"""The ``priorforge`` command."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from app.core.errors import PriorForgeError
from app.core.settings import get_settings

if TYPE_CHECKING:
    from app.teams.keys import Role

cli = typer.Typer(
    no_args_is_help=True, add_completion=False, help="PriorForge: synthetic AI-discourse corpora."
)
db_cli = typer.Typer(no_args_is_help=True, help="Database schema.")
report_cli = typer.Typer(no_args_is_help=True, help="Reports on generated corpora.")
llm_cli = typer.Typer(no_args_is_help=True, help="The bundled local model.")
keys_cli = typer.Typer(no_args_is_help=True, help="API keys.")
evalsets_cli = typer.Typer(
    no_args_is_help=True, help="Evaluation sets generated documents must not leak."
)
cli.add_typer(db_cli, name="db")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(report_cli, name="report")
cli.add_typer(llm_cli, name="llm")
cli.add_typer(evalsets_cli, name="eval-sets")
dedup_cli = typer.Typer(no_args_is_help=True, help="Near-duplicate indexes.")
cli.add_typer(dedup_cli, name="dedup")

console = Console()
err = Console(stderr=True)
LOCAL_TEAM = "local"


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code=2)


def _ensure_schema() -> None:
    """Embedded mode migrates itself; a server database is migrated with 'db upgrade'."""
    from app.core import migrate

    settings = get_settings()
    if settings.effective_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(settings.effective_database_url)


def _require_storage_url() -> None:
    """Fail before starting anything when the object store is missing or malformed."""
    from app.storage import check_storage_url

    try:
        check_storage_url(get_settings().effective_storage_url)
    except PriorForgeError as exc:
        raise _fail(exc.detail) from None


def _open_store() -> Any:
    """The configured store, checked against the database's binding (once per process)."""
    from app.storage.default import get_store

    try:
        return get_store()
    except PriorForgeError as exc:
        raise _fail(exc.detail) from None


def _check_store_binding() -> None:
    """Refuse to run against a store the database does not publish to. An unreachable
    database is no reason to refuse: /readyz reports it, and the next use checks again."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        _open_store()
    except SQLAlchemyError as exc:
        detail = escape(str(exc).splitlines()[0])
        err.print(f"[yellow]warning:[/] could not check the object store binding yet: {detail}")


def _local_principal(session: Any, role: str = "admin", team_name: str = LOCAL_TEAM) -> Any:
    """The team in-process jobs and previews run as (``--team``; created if new)."""
    from app.teams.keys import Role
    from app.teams.service import Principal, ensure_team

    team = ensure_team(session, team_name)
    return Principal(team_id=team.id, role=Role(role), key_id=uuid.uuid4())


@db_cli.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    from app.core import migrate

    settings = get_settings()
    if settings.effective_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.effective_database_url, revision)
    console.print(f"database at {revision}")


def _parse_role(role: str) -> Role:
    from app.teams.keys import Role

    try:
        return Role(role)
    except ValueError:
        raise _fail(f"--role must be one of admin, submit, read (got {role!r})") from None


def _parse_expiry(expires_in: str | None, expires_at: str | None) -> datetime | None:
    """The expiry the flags ask for, or None; the service checks it lies in the future."""
    from app.models.base import utcnow
    from app.teams.keys import parse_duration, parse_instant

    if expires_in is not None and expires_at is not None:
        raise _fail("give --expires-in or --expires-at, not both")
    try:
        if expires_in is not None:
            return utcnow() + parse_duration(expires_in)
        return parse_instant(expires_at) if expires_at is not None else None
    except ValueError as exc:
        flag = "--expires-in" if expires_in is not None else "--expires-at"
        raise _fail(f"{flag}: {exc}") from None


def _check_prefix(prefix: str) -> str:
    import re

    from app.teams.keys import PREFIX_PATTERN

    if not re.fullmatch(PREFIX_PATTERN, prefix):
        raise _fail(
            f"{prefix!r} is not a key prefix: give the 12 hex characters after 'pf_' "
            "(see 'priorforge keys list --all')"
        )
    return prefix


def _key_failure(exc: PriorForgeError) -> typer.Exit:
    hint = " (see 'priorforge keys list --all')" if exc.status == 404 else ""
    return _fail(exc.detail + hint)


@keys_cli.command("create")
def keys_create(
    team: Annotated[str, typer.Option(help="Team name; created if it does not exist.")],
    role: Annotated[str, typer.Option(help="admin | submit | read")] = "submit",
    name: Annotated[str | None, typer.Option(help="A label, e.g. who or what uses it.")] = None,
    expires_in: Annotated[
        str | None, typer.Option(help="Lifetime, e.g. 90d, 12h, 30m (units w d h m s).")
    ] = None,
    expires_at: Annotated[
        str | None, typer.Option(help="Expiry as ISO-8601 with an offset, e.g. 2027-01-31T00:00Z.")
    ] = None,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from app.core.db import session_scope
    from app.teams.service import create_key, when

    parsed = _parse_role(role)
    expiry = _parse_expiry(expires_in, expires_at)
    _ensure_schema()
    try:
        with session_scope() as session:
            issued = create_key(session, team, parsed, name=name, expires_at=expiry)
    except PriorForgeError as exc:
        raise _fail(exc.detail) from None
    until = f", expiring {when(expiry)}" if expiry is not None else ""
    err.print(
        f"created {parsed.value} key {issued.view.key.prefix} for team {issued.team.name!r}"
        f"{escape(until)}; it is shown only once:"
    )
    print(issued.token)  # noqa: T201  (stdout carries only the key, for scripts)


@keys_cli.command("list")
def keys_list(
    team: Annotated[str | None, typer.Option(help="Only this team's keys.")] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="Include revoked and expired keys.")
    ] = False,
) -> None:
    """List API keys, newest first: prefix, team, role, name, dates and state."""
    from app.core.db import session_scope
    from app.teams.service import find_team, list_keys, when

    _ensure_schema()
    try:
        with session_scope() as session:
            team_id = find_team(session, team).id if team is not None else None
            views = list_keys(session, team_id=team_id, include_inactive=show_all)
    except PriorForgeError as exc:
        raise _fail(exc.detail) from None
    table = Table("prefix", "team", "role", "name", "created", "last used", "expires", "state")
    for view in views:
        key = view.key
        table.add_row(
            key.prefix,
            escape(view.team),
            key.role,
            escape(key.name or ""),
            when(key.created_at),
            when(key.last_used_at) if key.last_used_at else "never",
            when(key.expires_at) if key.expires_at else "never",
            view.state.value,
        )
    console.print(table)
    if not views:
        err.print("no keys" + ("" if show_all else " (--all also shows revoked and expired keys)"))


@keys_cli.command("revoke")
def keys_revoke(
    prefix: Annotated[str, typer.Argument(help="The key's 12 hex characters after 'pf_'.")],
) -> None:
    """Revoke a key at once (revoking it again changes nothing)."""
    from app.core.db import session_scope
    from app.teams.service import revoke_key, when

    _check_prefix(prefix)
    _ensure_schema()
    try:
        with session_scope() as session:
            view = revoke_key(session, prefix, team_id=None)
    except PriorForgeError as exc:
        raise _key_failure(exc) from None
    console.print(f"key {prefix} of team {view.team!r} revoked at {when(view.key.revoked_at)}")


@keys_cli.command("rotate")
def keys_rotate(
    prefix: Annotated[str, typer.Argument(help="The key's 12 hex characters after 'pf_'.")],
    grace: Annotated[
        str | None,
        typer.Option(help="Let the old key work this long, e.g. 1h (default: revoke it now)."),
    ] = None,
) -> None:
    """Replace a key with a new one of the same team, role and name; print the new one once."""
    from app.core.db import session_scope
    from app.teams.keys import parse_duration
    from app.teams.service import rotate_key, when

    _check_prefix(prefix)
    try:
        period = parse_duration(grace) if grace is not None else None
    except ValueError as exc:
        raise _fail(f"--grace: {exc}") from None
    _ensure_schema()
    try:
        with session_scope() as session:
            issued, old = rotate_key(session, prefix, team_id=None, grace=period)
    except PriorForgeError as exc:
        raise _key_failure(exc) from None
    fate = f"works until {when(old.key.expires_at)}" if old.key.revoked_at is None else "is revoked"
    err.print(
        f"key {prefix} {fate}; its replacement {issued.view.key.prefix} for team "
        f"{issued.team.name!r} is shown only once:"
    )
    print(issued.token)  # noqa: T201  (stdout carries only the key, for scripts)


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(help="Port to listen on; 0 picks a free one (the log names it).", min=0),
    ] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(
            help="API processes; default: one per CPU (up to 8) with a broker, 1 embedded.",
            min=1,
            max=64,
        ),
    ] = None,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log a line per request.")
    ] = True,
) -> None:
    """Run the HTTP API (OpenAPI docs at /docs); embedded mode also runs a worker."""
    import subprocess
    import sys

    import uvicorn

    from app.core.process import die_with_parent

    _require_storage_url()
    _ensure_schema()
    _check_store_binding()
    settings = get_settings()
    worker_process = None
    if settings.embedded_broker:
        err.print(
            "no PRIORFORGE_BROKER_URL: using the embedded broker in "
            f"{settings.broker_dir} and starting one worker process"
        )
        worker_process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"], preexec_fn=die_with_parent
        )
    try:
        processes = workers or (1 if settings.embedded_broker else min(os.cpu_count() or 1, 8))
        err.print(f"serving the API on http://{host}:{port} with {processes} process(es)")
        uvicorn.run(
            "app.main:app",
            host=host,
            port=port,
            workers=processes,
            log_level="info",
            access_log=access_log,
        )
    finally:
        if worker_process is not None:
            worker_process.terminate()
            try:
                worker_process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker_process.kill()


@cli.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Task processes; 1 runs tasks in-process.")] = 1,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Run a Celery worker on PRIORFORGE_BROKER_URL (or the embedded broker)."""
    _require_storage_url()
    settings = get_settings()
    if settings.embedded_broker:
        err.print(f"no PRIORFORGE_BROKER_URL: taking work from {settings.broker_dir}")
    _ensure_schema()
    _check_store_binding()
    from workers.celery_app import celery_app

    pool = "solo" if concurrency == 1 else "prefork"
    celery_app.worker_main(
        [
            "worker",
            f"--loglevel={loglevel}",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            f"--queues={get_settings().task_queue}",
            "--without-gossip",
            "--without-mingle",
        ]
    )


def _parse_stances(values: list[str]) -> dict[str, float]:
    stances: dict[str, float] = {}
    for value in values:
        name, _, weight = value.partition("=")
        try:
            stances[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise _fail(f"--stance {value!r}: use NAME or NAME=WEIGHT, e.g. aligned=3") from None
    return stances


def _csv(value: str | None) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()] if value else []


SpecFile = Annotated[Path | None, typer.Option("--spec", help="Job spec JSON file.")]
DatasetOpt = Annotated[str | None, typer.Option("--dataset", help="Dataset name.")]
DocumentsOpt = Annotated[int | None, typer.Option("--documents", help="Accepted documents wanted.")]
StanceOpt = Annotated[
    list[str] | None, typer.Option("--stance", help="aligned | misaligned[=weight]; repeatable.")
]
FormsOpt = Annotated[str | None, typer.Option("--forms", help="Comma-separated surface-form ids.")]
TopicsOpt = Annotated[str | None, typer.Option("--topics", help="Comma-separated topics.")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Planner seed.")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Model name at the provider.")]
MinWordsOpt = Annotated[int | None, typer.Option("--min-words", help="Minimum length.")]
MaxWordsOpt = Annotated[int | None, typer.Option("--max-words", help="Maximum length.")]
DepthOpt = Annotated[
    str | None, typer.Option("--depth", help="Reasoning depth: light | standard | deep.")
]
NameOpt = Annotated[str | None, typer.Option("--name", help="A label for the job.")]
TeamOpt = Annotated[
    str,
    typer.Option(
        "--team",
        help="The team the job, its dataset and sets belong to (created if new): the API "
        "shows them to that team's keys.",
    ),
]
JudgeOpt = Annotated[
    bool | None,
    typer.Option(
        "--judge/--no-judge", help="Have the default provider check each document's stance."
    ),
]


def _build_spec(
    spec_file: Path | None,
    *,
    stance: list[str] | None,
    forms: str | None,
    topics: str | None,
    min_words: int | None,
    max_words: int | None,
    judge: bool | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A spec from --spec, with every flag given on the command line taking precedence."""
    from app.core.text import InvalidJSON, parse_json

    spec: dict[str, Any] = {}
    if spec_file is not None:
        try:
            loaded = parse_json(spec_file.read_bytes())
        except (OSError, InvalidJSON) as exc:
            raise _fail(f"--spec {spec_file}: {exc}") from None
        if not isinstance(loaded, dict):
            raise _fail(f"--spec {spec_file}: expected a JSON object")
        spec = loaded
    spec |= {key: value for key, value in fields.items() if value is not None}
    if stance:
        spec["stances"] = _parse_stances(stance)
    if forms:
        spec["surface_forms"] = _csv(forms)
    if topics:
        spec["scenarios"] = dict(spec.get("scenarios", {})) | {"topics": _csv(topics)}
    if min_words is not None or max_words is not None:
        spec["length_words"] = dict(spec.get("length_words", {}))
        if min_words is not None:
            spec["length_words"]["min"] = min_words
        if max_words is not None:
            spec["length_words"]["max"] = max_words
    if judge is not None:
        spec["judge"] = dict(spec.get("judge", {})) | {"enabled": judge}
    spec.setdefault("dataset", "default")
    spec.setdefault("documents", 8)
    return spec


@cli.command()
def generate(
    spec_file: SpecFile = None,
    dataset: DatasetOpt = None,
    documents: DocumentsOpt = None,
    stance: StanceOpt = None,
    forms: FormsOpt = None,
    topics: TopicsOpt = None,
    seed: SeedOpt = None,
    model: ModelOpt = None,
    min_words: MinWordsOpt = None,
    max_words: MaxWordsOpt = None,
    depth: DepthOpt = None,
    name: NameOpt = None,
    judge: JudgeOpt = None,
    team: TeamOpt = LOCAL_TEAM,
) -> None:
    """Run one job in this process (no broker needed), with a live progress bar."""
    run_in_process(
        _build_spec(
            spec_file,
            stance=stance,
            forms=forms,
            topics=topics,
            min_words=min_words,
            max_words=max_words,
            judge=judge,
            dataset=dataset,
            documents=documents,
            seed=seed,
            model=model,
            reasoning_depth=depth,
            name=name,
        ),
        team=team,
    )


@cli.command()
def preview(
    spec_file: SpecFile = None,
    items: Annotated[int, typer.Option("--items", "-n", help="How many items.")] = 3,
    dataset: DatasetOpt = None,
    documents: DocumentsOpt = None,
    stance: StanceOpt = None,
    forms: FormsOpt = None,
    topics: TopicsOpt = None,
    seed: SeedOpt = None,
    min_words: MinWordsOpt = None,
    max_words: MaxWordsOpt = None,
    depth: DepthOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    team: TeamOpt = LOCAL_TEAM,
) -> None:
    """Show the exact messages the first items of a spec would send, calling no model."""
    from app.core.db import session_scope
    from app.prompting import service as prompting

    raw = _build_spec(
        spec_file,
        stance=stance,
        forms=forms,
        topics=topics,
        min_words=min_words,
        max_words=max_words,
        dataset=dataset,
        documents=documents,
        seed=seed,
        reasoning_depth=depth,
    )
    spec = _validate_spec(raw)
    if not 1 <= items <= prompting.MAX_PREVIEW_ITEMS:
        raise _fail(f"--items must be between 1 and {prompting.MAX_PREVIEW_ITEMS}")
    _ensure_schema()
    try:
        with session_scope() as session:
            principal = _local_principal(session, "read", team_name=team)
            previews = prompting.preview(session, principal, spec, items)
    except PriorForgeError as exc:
        raise _fail(exc.detail) from None
    for p in previews:
        if as_json:
            record = {
                "index": p.item.index,
                "plan": p.item.to_json(),
                "messages": p.prompt.messages,
                "prompt_sha256": p.prompt.sha256,
                "template_version": p.prompt.template_version,
            }
            print(json.dumps(record, ensure_ascii=False))  # noqa: T201
            continue
        plan = p.item
        console.rule(
            f"item {plan.index} · {plan.stance.value} · {plan.surface_form} · "
            f"scenario {plan.scenario_id} · {plan.length_words} words"
        )
        for message in p.prompt.messages:
            console.print(f"[bold]{message['role']}[/]", highlight=False)
            console.print(message["content"], markup=False, highlight=False)
        console.print(f"prompt sha256 {p.prompt.sha256} · templates {p.prompt.template_version}")


def _validate_spec(raw_spec: dict[str, Any]) -> Any:
    from app.jobs.spec import JobSpec

    try:
        return JobSpec.model_validate(raw_spec)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors()
        )
        raise _fail(f"invalid job spec: {problems}") from None


# Tuned for the bundled 135M model on a CPU: shorter documents, a frequency penalty against
# its repetition loops, and room for the rejections a model that small produces.
DEMO_SPEC: dict[str, Any] = {
    "dataset": "demo",
    "documents": 8,
    "stances": {"aligned": 1},
    "surface_forms": ["news_report", "forum_thread", "lecture_transcript", "short_story"],
    "length_words": {"min": 80, "max": 700},
    "sampling": {"temperature": 0.8, "top_p": 0.95, "max_tokens": 1000, "frequency_penalty": 0.5},
    "max_attempts_factor": 4,
    "seed": 7,
    "name": "demo",
}


@cli.command()
def demo() -> None:
    """Generate a small aligned corpus end to end and show where it landed."""
    run_in_process(DEMO_SPEC, show_sample=True)


def run_in_process(
    raw_spec: dict[str, Any], *, show_sample: bool = False, team: str = LOCAL_TEAM
) -> None:
    from app.core.db import session_scope
    from app.generation import local_runner
    from app.jobs import service as jobs
    from app.jobs.dispatch import LocalDispatcher
    from app.llm.provider import resolve_provider

    spec = _validate_spec(raw_spec)
    settings = get_settings()
    _require_storage_url()
    _ensure_schema()
    store = _open_store()
    dispatcher = LocalDispatcher()
    try:
        with session_scope() as session:
            principal = _local_principal(session, team_name=team)
            job, _ = jobs.submit_job(
                session,
                principal,
                spec,
                idempotency_key=None,
                dispatcher=dispatcher,
                settings=settings,
            )
    except PriorForgeError as exc:
        raise _fail(exc.detail) from None

    provider = resolve_provider(settings, spec.provider)
    where = provider.base_url
    if provider.local:
        where = _start_local_model(provider)
    console.print(
        f"job [bold]{job.id}[/] of team [bold]{team}[/]: {spec.documents} documents into "
        f"dataset [bold]{spec.dataset}[/] with {spec.model or provider.model} at {where}"
    )
    started = time.monotonic()
    run = local_runner.start(job.id, dispatcher, settings=settings, store=store)
    view = _watch(job.id, principal, run, started, spec.documents)
    if run.error is not None:
        raise _fail(f"the job stopped with an error: {run.error!r}")
    _summary(view, time.monotonic() - started)
    if view.job.status == "succeeded":
        _publish(principal, spec.dataset, store, show_sample=show_sample)
    else:
        raise _fail(f"job {view.job.status}: {view.job.error or 'see the summary above'}")


def _start_local_model(provider: Any) -> str:
    from app.llm import local

    with console.status(f"starting the bundled local model ({local.MODEL_NAME}, llama.cpp) …"):
        try:
            server = local.ensure_server(Path(provider.local_log_dir))
        except local.LocalModelUnavailable as exc:
            raise _fail(str(exc)) from None
    console.print(f"local model ready on {server.base_url} in {server.started_in:.1f} s")
    return f"{server.base_url} (local)"


def _watch(job_id: uuid.UUID, principal: Any, run: Any, started: float, total: int) -> Any:
    from app.core.db import session_scope
    from app.jobs import service as jobs

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} accepted"),
        TextColumn("· {task.fields[rejected]} rejected"),
        TextColumn("· {task.fields[tokens]} tok · {task.fields[rate]} tok/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("queued", total=total, rejected=0, tokens=0, rate="-")
        while True:
            finished = run.done.wait(0.5)
            with session_scope() as session:
                view = jobs.view(session, jobs.get_job(session, principal, job_id))
            tokens = view.usage.completion_tokens
            elapsed = max(time.monotonic() - started, 1e-6)
            rejected = (
                sum(view.progress.rejected.values())
                + view.progress.duplicates
                + view.progress.failed
            )
            progress.update(
                task,
                total=view.progress.requested,
                completed=view.progress.accepted,
                rejected=rejected,
                tokens=tokens,
                rate=f"{tokens / elapsed:.1f}",
                description=view.job.status,
            )
            if finished:
                return view


def _summary(view: Any, wall: float) -> None:
    p, u = view.progress, view.usage
    table = Table(title=f"job {view.job.id}", show_header=False)
    table.add_row("status", view.job.status)
    table.add_row("accepted / requested", f"{p.accepted} / {p.requested}")
    table.add_row("attempted", str(p.attempted))
    if p.not_run:
        table.add_row("planned, never run", str(p.not_run))
    for reason, count in p.rejected.items():
        table.add_row(f"rejected: {reason}", str(count))
    table.add_row("duplicates", str(p.duplicates))
    table.add_row("failed calls (items)", str(p.failed))
    table.add_row("tokens (prompt / completion)", f"{u.prompt_tokens} / {u.completion_tokens}")
    table.add_row("LLM calls / errors", f"{u.llm_calls} / {u.llm_errors}")
    table.add_row("cost (USD)", f"{u.cost_usd:.4f}")
    if view.judge is not None:
        j = view.judge
        agreement = f"{j.agreement:.1%}" if j.agreement is not None else "-"
        table.add_row("judge: agreement (judged)", f"{agreement} ({j.judged})")
        table.add_row("judge: verdicts", ", ".join(f"{k} {v}" for k, v in j.verdicts.items()))
        table.add_row(
            "judge: tokens / cost (USD)",
            f"{j.usage.prompt_tokens} / {j.usage.completion_tokens} / {j.usage.cost_usd:.4f}",
        )
    table.add_row("wall time", f"{wall:.1f} s")
    table.add_row("completion tokens/s", f"{u.completion_tokens / max(wall, 1e-6):.1f}")
    console.print(table)


def _publish(principal: Any, dataset: str, store: Any, *, show_sample: bool) -> None:
    from app.core.db import session_scope
    from app.datasets import service as datasets
    from app.datasets.manifest import sha256_hex
    from app.datasets.shards import read_shard

    with session_scope() as session:
        created = datasets.create_version(
            session, principal, dataset, store=store, settings=get_settings()
        )
        found_dataset, version = datasets.get_version(
            session, principal, dataset, created.version.number
        )
    manifest = json.loads(datasets.read_manifest(store, version))
    root = getattr(store, "root", None)
    prefix = datasets.dataset_prefix(found_dataset)
    console.print(
        f"dataset [bold]{dataset}[/] version {version.number}: {manifest['records']} records"
    )

    def location(key: str) -> str:
        return str(root / key) if root is not None else f"{store.url}/{key}"

    console.print(f"  manifest: {location(version.manifest_key)}")
    for entry in manifest["files"]:
        key = f"{prefix}/{entry['path']}"
        data = store.get_bytes(key)
        verified = len(data) == entry["bytes"] and sha256_hex(data) == entry["sha256"]
        if not verified:
            raise _fail(f"shard {key} does not match its manifest entry: storage is corrupt")
        console.print(f"  shard:    {location(key)}")
        console.print(
            f"            {entry['records']} records, {entry['bytes']} bytes, "
            f"sha256 {entry['sha256'][:16]}… verified"
        )
    if show_sample and manifest["files"]:
        first = manifest["files"][0]
        record = next(read_shard(store.get_bytes(f"{prefix}/{first['path']}")))
        meta = record["metadata"]
        console.rule(
            f"sample: {meta['surface_form']} · {meta['stance']} · scenario {meta['scenario']}"
        )
        console.print(
            record["text"][:1500] + ("…" if len(record["text"]) > 1500 else ""), markup=False
        )
        console.rule()
        console.print(
            "Next: 'priorforge keys create --team local --role admin' prints an API key that "
            "sees this dataset; 'priorforge serve' runs the API (docs at "
            "http://127.0.0.1:8000/docs) with an embedded broker and worker. For a team, set "
            "PRIORFORGE_DATABASE_URL, PRIORFORGE_BROKER_URL and PRIORFORGE_STORAGE_URL (a store "
            "every process shares): see the README. '.venv/bin/priorforge --help' lists "
            "everything."
        )


@llm_cli.command("serve")
def llm_serve(
    port: Annotated[int, typer.Option(help="Loopback port; 0 picks a free one.")] = 8080,
) -> None:
    """Serve the bundled local model on an OpenAI-compatible endpoint until interrupted."""
    from app.llm import local

    settings = get_settings()
    try:
        server = local.LocalModelServer.start(log_dir=settings.data_dir / "logs", port=port or None)
    except local.LocalModelUnavailable as exc:
        raise _fail(str(exc)) from None
    console.print(f"{local.MODEL_NAME} ready in {server.started_in:.1f} s; use it with:")
    console.print(f"  export PRIORFORGE_LLM_BASE_URL={server.base_url}", highlight=False)
    console.print(f"  (log: {server.log_path}; Ctrl-C stops it)", highlight=False)
    try:
        while server.process.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@evalsets_cli.command("add")
def evalsets_add(
    name: Annotated[str, typer.Argument(help="A name: lowercase letters, digits, - and _.")],
    path: Annotated[Path, typer.Argument(help='JSONL: {"text": ..., "id": ...} per line.')],
    team: TeamOpt = LOCAL_TEAM,
) -> None:
    """Register an evaluation set for the jobs this command line runs."""
    import re

    from app.core.db import session_scope
    from app.evalsets import service as evalsets

    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", name):
        raise _fail(f"{name!r} is not a valid name: use lowercase letters, digits, - and _")
    try:
        body = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"{path}: {exc}") from None
    _ensure_schema()
    try:
        with session_scope() as session:
            principal = _local_principal(session, team_name=team)
            row, too_short = evalsets.register(session, principal, name, body)
            items, sha = row.items, row.sha256
    except PriorForgeError as exc:
        errors = exc.extensions.get("errors", [])
        lines = "".join(f"\n  line {e.get('line', '?')}: {e['message']}" for e in errors)
        raise _fail(exc.detail + lines) from None
    console.print(
        f"registered [bold]{name}[/]: {items} items, sha256 {sha[:12]}…"
        + (
            f"; {too_short} under 8 words are checked only by jobs whose decontam.ngram is "
            "at most their length"
            if too_short
            else ""
        )
    )


@evalsets_cli.command("list")
def evalsets_list(team: TeamOpt = LOCAL_TEAM) -> None:
    """The evaluation sets registered for a team's jobs."""
    from app.core.db import session_scope
    from app.evalsets import service as evalsets

    _ensure_schema()
    table = Table("name", "items", "sha256", "registered")
    with session_scope() as session:
        for row in evalsets.list_sets(session, _local_principal(session, team_name=team)):
            table.add_row(row.name, str(row.items), row.sha256[:12], row.created_at.isoformat())
    console.print(table)


@dedup_cli.command("rebuild")
def dedup_rebuild(
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset name.")],
    team: Annotated[
        str, typer.Option("--team", help="The team owning it (default: the CLI's own).")
    ] = LOCAL_TEAM,
) -> None:
    """Rebuild a dataset's near-duplicate index from its documents' stored signatures.

    For when the index was lost, or after an upgrade changed the MinHash algorithm (stale
    signatures are recomputed from the texts). Workers wait on the dataset's lock meanwhile.
    """
    from app.core.db import session_scope
    from app.datasets import service as datasets
    from app.dedup.service import rebuild_bands
    from app.teams.service import find_team

    _ensure_schema()
    started = time.monotonic()
    try:
        with session_scope() as session:
            found = datasets.find_dataset(session, find_team(session, team).id, dataset)
            if found is None:
                raise _fail(f"team {team!r} has no dataset named {dataset!r}")
            indexed = rebuild_bands(session, found.id)
    except PriorForgeError as exc:
        raise _fail(exc.detail) from None
    console.print(
        f"rebuilt the near-duplicate index of {team}/{dataset}: {indexed} documents "
        f"in {time.monotonic() - started:.1f} s"
    )


@report_cli.command("diversity")
def report_diversity(
    job: Annotated[str, typer.Option("--job", help="Job id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Distinct-n, mean pairwise MinHash Jaccard and coverage of a job's accepted documents."""
    from dataclasses import asdict

    from app.core.db import session_scope
    from app.quality.service import diversity_report

    try:
        job_id = uuid.UUID(job)
    except ValueError:
        raise _fail(f"--job {job!r} is not a job id (a UUID)") from None
    _ensure_schema()
    try:
        with session_scope() as session:
            report = diversity_report(session, job_id, get_settings().canary_guid)
    except PriorForgeError as exc:
        raise _fail(exc.detail) from None
    if as_json:
        print(json.dumps(asdict(report)))  # noqa: T201
        return
    table = Table(title=f"diversity of job {job_id}", show_header=False)
    table.add_row("accepted documents", str(report.documents))
    for n, value in report.distinct.items():
        table.add_row(f"distinct-{n}", f"{value:.3f}")
    table.add_row(
        "mean pairwise Jaccard (word 5-grams, MinHash 128)",
        f"{report.mean_jaccard:.4f} over {report.pairs} pairs",
    )
    table.add_row(
        "scenarios used / selected", f"{report.scenarios_used} / {report.scenarios_selected}"
    )
    table.add_row("surface forms used / selected", f"{report.forms_used} / {report.forms_selected}")
    table.add_row("per stance", ", ".join(f"{k} {v}" for k, v in report.per_stance.items()))
    console.print(table)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
