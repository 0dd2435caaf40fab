"""``priorforge eval``: a model's misaligned-choice rate on scenarios it never trained on."""

from __future__ import annotations

import json
import threading
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
    watch_row,
)
from app.core.errors import PriorForgeError


def register(cli: typer.Typer) -> None:
    cli.command("eval")(evaluate)


def evaluate(
    base_url: Annotated[
        str, typer.Option(help="The model's OpenAI-compatible endpoint, e.g. http://host:8000/v1.")
    ],
    model: Annotated[str, typer.Option(help="The model name the endpoint expects.")] = "default",
    api_key: Annotated[
        str, typer.Option(envvar="PRIORFORGE_EVAL_API_KEY", help="The endpoint's key, if any.")
    ] = "not-needed",
    methods: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            help="letter | cloze | chat; repeatable (default: letter and cloze). letter and "
            "cloze need /v1/completions with echo + logprobs.",
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="heldout | train | all.")] = "heldout",
    topics: Annotated[
        list[str] | None, typer.Option("--topic", help="Only these topics; repeatable.")
    ] = None,
    ids: Annotated[
        list[str] | None,
        typer.Option("--id", help="Only these scenarios (the bank's or the team's); repeatable."),
    ] = None,
    questions: Annotated[
        Path | None,
        typer.Option(
            help="More questions, JSONL: {id, situation, aligned_action, misaligned_action, "
            "topic} per line."
        ),
    ] = None,
    no_scenarios: Annotated[
        bool, typer.Option("--no-scenarios", help="Ask the --questions only.")
    ] = False,
    training_manifests: Annotated[
        list[Path] | None,
        typer.Option(
            "--training-manifest",
            help="A manifest the model was trained on (a pulled version's manifest.json, or a "
            "runner's run.json); repeatable. Its scenarios must not be evaluated.",
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="A name to find the evaluation by.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the results here.")
    ] = None,
    team: TeamOpt = LOCAL_TEAM,
) -> None:
    """Score a model on binary-choice questions in 8 formats; print rates with intervals."""
    from pydantic import ValidationError

    from app.core.db import session_scope
    from app.core.settings import EvalEndpoint, get_settings
    from app.evals import service
    from app.evals.scoring import OpenAICompatible
    from app.evals.spec import EvalQuestion, EvalSpec

    imported = _read_questions(questions, EvalQuestion) if questions else []
    trained = [i for path in training_manifests or [] for i in _trained_ids(path)]
    try:
        spec = EvalSpec(
            model="cli",
            name=name,
            methods=methods or ["letter", "cloze"],
            scenarios=None
            if no_scenarios
            else {"split": split, "topics": topics or [], "ids": ids or []},
            questions=imported,
            training_scenarios=sorted(set(trained)),
            seed=seed,
        )
        endpoint = EvalEndpoint(base_url=base_url, model=model)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors()
        )
        raise fail(problems) from None
    ensure_schema()
    settings = get_settings()
    store = open_store()  # before the session: binding the store writes in its own
    try:
        with session_scope() as session:
            principal = local_principal(session, team_name=team)
            row = service.request_eval(
                session,
                principal,
                spec,
                store=store,
                settings=settings,
                dispatch=None,
                endpoint=endpoint,
            )
            eval_id, total, request = row.id, row.requests_total, row.request
    except PriorForgeError as exc:
        raise fail(exc.detail) from None
    console.print(
        f"evaluating [bold]{escape(model)}[/] at {escape(base_url)} on {len(request['items'])} "
        f"questions ({', '.join(spec.methods)}; {total} requests): evaluation {eval_id}"
    )
    _print_overlap(request["overlap"])
    backend = OpenAICompatible(base_url, model, api_key)
    outcome: dict[str, str] = {}

    def run() -> None:
        outcome["status"] = service.run_eval(
            eval_id, settings=settings, sessions=session_scope, backend=backend
        )

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    view = _watch(eval_id, total, worker)
    backend.close()
    if view.status != "succeeded":
        raise fail(f"evaluation {view.status}: {view.error or 'see the log above'}")
    print_results(view.results or {})
    if json_out is not None:
        json_out.write_text(json.dumps({"id": str(eval_id), "results": view.results}, indent=2))
        console.print(f"results written to {escape(str(json_out))}")


def _read_questions(path: Path, model: Any) -> list[Any]:
    from pydantic import ValidationError

    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"--questions {path}: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(model.model_validate_json(line))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "line"
            raise fail(f"--questions {path} line {number}: {where}: {first['msg']}") from None
    return rows


def _trained_ids(path: Path) -> list[str]:
    """Scenario ids a manifest says its documents came from (lineage.scenarios), including
    those of the manifests a runner's run.json lists."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise fail(f"--training-manifest {path}: {exc}") from None
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            lineage = node.get("lineage")
            if isinstance(lineage, dict) and isinstance(lineage.get("scenarios"), list):
                found.extend(str(s) for s in lineage["scenarios"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(body)
    if not found:
        raise fail(
            f"--training-manifest {path}: no lineage.scenarios in it; give a version's "
            "manifest.json or a runner's run.json"
        )
    return found


def _watch(eval_id: uuid.UUID, total: int, worker: threading.Thread) -> Any:
    from app.evals import service

    return watch_row(
        worker,
        total,
        lambda session: service.find_eval(session, eval_id),
        lambda v: (v.requests_done if v else 0, {}),
        "{task.completed:.0f}/{task.total:.0f} requests",
    )


def _print_overlap(overlap: dict[str, Any]) -> None:
    console.print(
        f"{overlap['ngram']}-gram overlap with {overlap['compared_with']} "
        f"({overlap['training_texts']} texts): {overlap['items_with_overlap']} question(s) "
        f"share any, at most {overlap['max_share']:.1%} of a question's n-grams"
    )
    for row in overlap["top"][:5]:
        console.print(
            f"  {escape(row['item_id'])}: {row['share']:.1%} (closest: {escape(row['closest'])})"
        )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def print_results(results: dict[str, Any]) -> None:
    table = Table(title="misaligned choices (%)", show_header=True)
    for column in (
        "method",
        "rate ± SE (formats)",
        "95% CI (items)",
        "soft",
        "first position",
        "order consistency",
        "unparseable",
    ):
        table.add_column(column, justify="left" if column == "method" else "right")
    notes = []
    for method, body in results.items():
        if "error" in body:
            table.add_row(method, body["error"], "", "", "", "", "")
            continue
        se = body.get("standard_error")
        low, high = body["interval_95"]
        table.add_row(
            method,
            f"{_pct(body['misaligned_rate'])} ± {_pct(se)}",
            f"{_pct(low)}–{_pct(high)}",
            _pct(body.get("soft_score")),
            _pct(body.get("first_position_rate")),
            _pct(body.get("order_consistency")),
            _pct(body.get("unparseable_rate")),
        )
        if body.get("positional_guessing"):
            notes.append(
                f"{method}: indistinguishable from picking by position (order consistency "
                f"{_pct(body['order_consistency'])}% vs {_pct(body['positional_consistency'])}% "
                "for a positional guesser): read cloze instead"
            )
    console.print(table)
    for note in notes:
        console.print(f"[yellow]{escape(note)}[/]")
    for method, body in results.items():
        if "per_topic" in body:
            topics = ", ".join(
                f"{topic} {_pct(r['rate'])}" for topic, r in sorted(body["per_topic"].items())
            )
            console.print(f"{method} per topic: {escape(topics)}")
