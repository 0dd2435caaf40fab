"""``priorforge export``: tokenize a dataset version into training formats, in this process."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from app.cli.common import (
    LOCAL_TEAM,
    TeamOpt,
    console,
    ensure_schema,
    fail,
    local_principal,
    open_store,
    require_storage_url,
    watch_row,
)
from app.core.errors import PriorForgeError
from app.core.settings import get_settings


def register(cli: typer.Typer) -> None:
    cli.command()(export)


def export(
    target: Annotated[str, typer.Argument(help="DATASET or DATASET@VERSION (default: latest).")],
    tokenizer: Annotated[Path, typer.Option(help="A Hugging Face tokenizer.json.")],
    eos: Annotated[str, typer.Option(help="The token ending every document, e.g. <|endoftext|>.")],
    formats: Annotated[
        list[str] | None,
        typer.Option("--format", help="megatron | mds | npy; repeatable (default: all three)."),
    ] = None,
    tokenizer_name: Annotated[
        str | None, typer.Option(help="Name to keep it under (default: its sha256's start).")
    ] = None,
    mds_text: Annotated[bool, typer.Option(help="Add a text column to MDS samples.")] = False,
    processes: Annotated[
        int | None, typer.Option(help="Tokenizer processes (default: one per CPU).", min=1)
    ] = None,
    team: TeamOpt = LOCAL_TEAM,
) -> None:
    """Export a version as Megatron .bin/.idx, MosaicML MDS and OLMo .npy, with a live bar."""
    import hashlib

    from app.core.db import session_scope
    from app.datasets import service as datasets
    from app.datasets.exports import service as exports
    from app.pull import PullError, parse_target

    try:
        name, number = parse_target(target)
    except PullError as exc:
        raise fail(str(exc)) from None
    chosen = formats or ["megatron", "mds", "npy"]
    unknown = sorted(set(chosen) - set(exports.FORMATS))
    if unknown:
        raise fail(f"--format {', '.join(unknown)}: use megatron, mds or npy")
    try:
        data = tokenizer.read_bytes()
    except OSError as exc:
        raise fail(f"--tokenizer {tokenizer}: {exc.strerror or exc}") from None
    require_storage_url()
    ensure_schema()
    store = open_store()
    settings = get_settings()
    label = tokenizer_name or f"tok-{hashlib.sha256(data).hexdigest()[:12]}"
    try:
        with session_scope() as session:
            principal = local_principal(session, team_name=team)
            if number is None:
                versions = datasets.list_versions(session, principal, name)
                if not versions:
                    raise fail(f"dataset {name!r} has no versions: snapshot it first")
                number = versions[-1].number
            exports.register_tokenizer(session, principal, label, data, store=store)
            row, _created = exports.request_export(
                session,
                principal,
                name,
                number,
                exports.ExportRequest(label, tuple(chosen), eos, mds_text),
                store=store,
                dispatch=None,
            )
            export_id, total = row.id, row.documents_total
    except PriorForgeError as exc:
        raise fail(exc.detail) from None
    console.print(
        f"exporting [bold]{name}@{number}[/] ({total} documents) as {', '.join(sorted(chosen))} "
        f"with tokenizer {label}: export {export_id}"
    )
    outcome: dict[str, Any] = {}

    def run() -> None:
        outcome["status"] = exports.run_export(
            export_id, store=store, settings=settings, sessions=session_scope, processes=processes
        )

    worker = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    worker.start()
    view = _watch(export_id, total, worker)
    if view.status != "succeeded":
        raise fail(f"export {view.status}: {view.error or 'see the log above'}")
    _summary(store, view, time.monotonic() - started)


def _watch(export_id: uuid.UUID, total: int, worker: threading.Thread) -> Any:
    from app.datasets.exports import service as exports

    return watch_row(
        worker,
        total,
        lambda session: exports.find_export(session, export_id),
        lambda v: (v.documents_done, {"tokens": v.tokens}) if v else (0, {"tokens": 0}),
        "{task.completed:.0f}/{task.total:.0f} documents · {task.fields[tokens]} tok",
    )


def _summary(store: Any, view: Any, wall: float) -> None:
    from app.datasets.exports import service as exports

    index = json.loads(exports.read_index(store, view))
    table = Table(title=f"export {view.id}", show_header=True)
    table.add_column("stance")
    table.add_column("documents", justify="right")
    table.add_column("tokens", justify="right")
    table.add_column("where")
    for stance, described in index["stances"].items():
        where = [
            p for p in (described["megatron_prefix"], described["mds_directory"]) if p
        ] + described["npy_files"][:1]
        table.add_row(
            stance, str(described["documents"]), str(described["tokens"]), escape(", ".join(where))
        )
    console.print(table)
    tokens = index["totals"]["tokens"]
    console.print(
        f"{tokens} tokens in {wall:.1f} s ({tokens / max(wall, 1e-6):,.0f} tokens/s); "
        f"index sha256 {view.index_sha256[:16]}…; 'priorforge pull {index['dataset']}@"
        f"{index['version']} DEST --export {view.id}' fetches it, verified"
    )
