"""What every command group shares: consoles, failure, schema, store and the local team."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from app.core.errors import PriorForgeError
from app.core.settings import get_settings

console = Console()
err = Console(stderr=True)
LOCAL_TEAM = "local"


def fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code=2)


def ensure_schema() -> None:
    """Embedded mode migrates itself; a server database is migrated with 'db upgrade'."""
    from app.core import migrate

    settings = get_settings()
    if settings.effective_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(settings.effective_database_url)


def require_storage_url() -> None:
    """Fail before starting anything when the object store is missing, malformed, or cannot
    be written by this process (a bucket that does not exist, credentials without access)."""
    from app.storage import open_store as open_url

    settings = get_settings()
    try:
        store = open_url(
            settings.effective_storage_url,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
        )
        store.check()
    except PriorForgeError as exc:
        raise fail(exc.detail) from None


def open_store() -> Any:
    """The configured store, checked against the database's binding (once per process)."""
    from app.storage.default import get_store

    try:
        return get_store()
    except PriorForgeError as exc:
        raise fail(exc.detail) from None


def check_providers() -> None:
    """Refuse to start on a providers file that does not load (naming the fix)."""
    from app.llm.provider import providers

    try:
        providers(get_settings())
    except PriorForgeError as exc:
        raise fail(exc.detail) from None


def check_store_binding() -> None:
    """Refuse to run against a store the database does not publish to. An unreachable
    database is no reason to refuse: /readyz reports it, and the next use checks again."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        open_store()
    except SQLAlchemyError as exc:
        detail = escape(str(exc).splitlines()[0])
        err.print(f"[yellow]warning:[/] could not check the object store binding yet: {detail}")


def local_principal(session: Any, role: str = "admin", team_name: str = LOCAL_TEAM) -> Any:
    """The team in-process jobs and previews run as (``--team``; created if new)."""
    from app.teams.keys import Role
    from app.teams.service import Principal, ensure_team

    team = ensure_team(session, team_name)
    return Principal(team_id=team.id, role=Role(role), key_id=uuid.uuid4())


TeamOpt = Annotated[
    str,
    typer.Option(
        "--team",
        help="The team the job, its dataset and sets belong to (created if new): the API "
        "shows them to that team's keys.",
    ),
]


def watch_row(
    worker: threading.Thread,
    total: int,
    find: Callable[[Any], Any],
    progress_of: Callable[[Any], tuple[int, dict[str, Any]]],
    detail: str,
) -> Any:
    """A live bar while ``worker`` runs: ``find(session)`` loads the row it writes (twice a
    second), ``progress_of(row)`` gives (done, extra fields for ``detail``); the last row."""
    from app.core.db import session_scope

    def read() -> Any:
        with session_scope() as session:
            row = find(session)
            session.expunge(row)
            return row

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn(detail),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        done, fields = progress_of(None)
        task = progress.add_task("queued", total=total, **fields)
        while True:
            worker.join(0.5)
            row = read()
            done, fields = progress_of(row)
            progress.update(task, completed=done, description=row.status, **fields)
            if not worker.is_alive():
                return row
