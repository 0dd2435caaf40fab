"""``priorforge dedup``: near-duplicate indexes."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from app.cli.common import LOCAL_TEAM, console, ensure_schema, fail
from app.core.errors import PriorForgeError

dedup_cli = typer.Typer(no_args_is_help=True, help="Near-duplicate indexes.")


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

    ensure_schema()
    started = time.monotonic()
    try:
        with session_scope() as session:
            found = datasets.find_dataset(session, find_team(session, team).id, dataset)
            if found is None:
                raise fail(f"team {team!r} has no dataset named {dataset!r}")
            indexed = rebuild_bands(session, found.id)
    except PriorForgeError as exc:
        raise fail(exc.detail) from None
    console.print(
        f"rebuilt the near-duplicate index of {team}/{dataset}: {indexed} documents "
        f"in {time.monotonic() - started:.1f} s"
    )
