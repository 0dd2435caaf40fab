"""``priorforge pull``: bring a dataset version from an API into a directory, verified."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from app.cli.common import console, err, fail
from app.core.settings import get_settings


def register(cli: typer.Typer) -> None:
    cli.command()(pull)


def pull(
    target: Annotated[
        str,
        typer.Argument(
            help="DATASET or DATASET@VERSION (default: the latest); with "
            "--verify, the directory to check."
        ),
    ],
    dest: Annotated[Path | None, typer.Argument(help="Directory to pull into.")] = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Re-check a pulled directory against its manifest.")
    ] = False,
    api_url: Annotated[
        str | None, typer.Option(help="The API (default: PRIORFORGE_API_URL).")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(help="A read key (default: PRIORFORGE_API_KEY).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Parallel range downloads.", min=1, max=64)] = 8,
    redirect: Annotated[
        bool,
        typer.Option(
            "--redirect/--no-redirect",
            help="Fetch bytes from S3 presigned URLs instead of through the API.",
        ),
    ] = False,
) -> None:
    """Pull a dataset version: parallel ranged downloads, resumable, every byte verified."""
    from app.pull import Client, PullError, parse_target
    from app.pull import pull as pull_version
    from app.pull import verify as verify_copy

    if verify:
        if dest is not None:
            raise fail("--verify takes one directory: priorforge pull --verify DEST")
        try:
            checked, problems = verify_copy(Path(target))
        except PullError as exc:
            raise fail(str(exc)) from None
        for problem in problems:
            err.print(f"[red]{escape(problem.path)}[/]: {escape(problem.problem)}")
        if problems:
            raise fail(f"{len(problems)} of {checked} files do not match the manifest")
        console.print(f"{checked} files match the manifest (size and sha256)")
        return
    if dest is None:
        raise fail("give a destination: priorforge pull DATASET[@VERSION] DEST")
    settings = get_settings()
    key = api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
    try:
        name, version = parse_target(target)
        client = Client(api_url or settings.api_url, key)
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=err) as progress:
            task = progress.add_task("manifest", total=None)

            def planned(report: object) -> None:
                from app.pull import PullReport

                assert isinstance(report, PullReport)
                already = report.files_already_here
                progress.update(
                    task,
                    description=f"{report.dataset}@{report.version} "
                    f"({report.files - already} of {report.files} files)",
                    total=report.bytes_missing,
                )

            report = pull_version(
                client,
                name,
                version,
                dest,
                workers=workers,
                redirect=redirect,
                progress=lambda n: progress.advance(task, n),
                on_plan=planned,
            )
    except PullError as exc:
        raise fail(str(exc)) from None
    console.print(
        f"{report.dataset}@{report.version}: {report.files} files, {report.bytes_total} bytes "
        f"verified in {dest} ({report.files_downloaded} downloaded, "
        f"{report.files_already_here} already here; {report.bytes_downloaded} bytes fetched "
        f"in {report.seconds:.1f} s)"
    )
