"""``priorforge db``: the database schema."""

from __future__ import annotations

import typer

from app.cli.common import console
from app.core.settings import get_settings

db_cli = typer.Typer(no_args_is_help=True, help="Database schema.")


@db_cli.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    from app.core import migrate

    settings = get_settings()
    if settings.effective_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.effective_database_url, revision)
    console.print(f"database at {revision}")
