"""``priorforge report``: reports on generated corpora."""

from __future__ import annotations

import json
import uuid
from typing import Annotated

import typer
from rich.table import Table

from app.cli.common import console, ensure_schema, fail
from app.core.errors import PriorForgeError
from app.core.settings import get_settings

report_cli = typer.Typer(no_args_is_help=True, help="Reports on generated corpora.")


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
        raise fail(f"--job {job!r} is not a job id (a UUID)") from None
    ensure_schema()
    try:
        with session_scope() as session:
            report = diversity_report(session, job_id, get_settings().canary_guid)
    except PriorForgeError as exc:
        raise fail(exc.detail) from None
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
