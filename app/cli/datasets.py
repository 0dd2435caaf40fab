"""``priorforge pull``: bring a dataset version from an API into a directory, verified."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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

ApiUrlOpt = Annotated[str | None, typer.Option(help="The API (default: PRIORFORGE_API_URL).")]
ApiKeyOpt = Annotated[str | None, typer.Option(help="A read key (default: PRIORFORGE_API_KEY).")]


def _client(api_url: str | None, api_key: str | None) -> Any:
    """The API client the flags, or else the settings, point at."""
    from app.pull import Client

    settings = get_settings()
    key = api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
    return Client(api_url or settings.api_url, key)


def register(cli: typer.Typer) -> None:
    cli.command()(pull)
    cli.command()(mix)


def mix(
    spec: Annotated[
        Path, typer.Argument(help="The mixture as JSON (the body of POST /v1/mixtures).")
    ],
    out: Annotated[
        Path | None, typer.Option(help="Write each framework's config files into this directory.")
    ] = None,
    api_url: ApiUrlOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Plan a training mixture: repeats from the exports' token counts, warnings, configs for
    Megatron-LM, GPT-NeoX, MosaicML streaming / llm-foundry and OLMo."""
    import json

    from app.pull import PullError

    try:
        body = json.loads(spec.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise fail(f"{spec}: {exc}") from None
    try:
        planned = _client(api_url, api_key).post_json("/v1/mixtures", body)
    except PullError as exc:
        raise fail(str(exc)) from None
    console.print(planned["summary"], markup=False, highlight=False)
    for warning in planned["warnings"]:
        err.print(f"[yellow]warning:[/] {escape(warning)}")
    if out is None:
        console.print("(--out DIR writes each framework's config files)")
        return
    written = 0
    for framework, files in planned["configs"].items():
        for file in files:
            target = out / framework / file["name"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(file["content"], encoding="utf-8")
            written += 1
    console.print(f"{written} config files in {out} (one folder per framework)")


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
    api_url: ApiUrlOpt = None,
    api_key: ApiKeyOpt = None,
    workers: Annotated[int, typer.Option(help="Parallel range downloads.", min=1, max=64)] = 8,
    export: Annotated[
        str | None,
        typer.Option(help="Pull this export of the version (its id) instead of its documents."),
    ] = None,
    owner: Annotated[
        str | None,
        typer.Option(help="The team that shared the dataset with yours (default: your own)."),
    ] = None,
    redirect: Annotated[
        bool,
        typer.Option(
            "--redirect/--no-redirect",
            help="Fetch bytes from S3 presigned URLs instead of through the API.",
        ),
    ] = False,
) -> None:
    """Pull a dataset version: parallel ranged downloads, resumable, every byte verified."""
    from app.pull import PullError, parse_target
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
    try:
        name, version = parse_target(target)
        client = _client(api_url, api_key)
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
                export=export,
                owner=owner,
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
