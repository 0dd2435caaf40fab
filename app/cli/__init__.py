"""The ``priorforge`` command: one module per command group."""

from __future__ import annotations

import typer

from app.cli import datasets, evals, exports, jobs, server
from app.cli.db import db_cli
from app.cli.dedup import dedup_cli
from app.cli.evalsets import evalsets_cli
from app.cli.keys import keys_cli
from app.cli.llm import llm_cli
from app.cli.report import report_cli

cli = typer.Typer(
    no_args_is_help=True, add_completion=False, help="PriorForge: synthetic AI-discourse corpora."
)
server.register(cli)
jobs.register(cli)
datasets.register(cli)
exports.register(cli)
evals.register(cli)
cli.add_typer(db_cli, name="db")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(report_cli, name="report")
cli.add_typer(llm_cli, name="llm")
cli.add_typer(evalsets_cli, name="eval-sets")
cli.add_typer(dedup_cli, name="dedup")


def main() -> None:
    cli()
