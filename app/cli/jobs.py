"""``priorforge generate``, ``preview`` and ``demo``: jobs run in this process."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
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
)
from app.core.errors import PriorForgeError
from app.core.settings import get_settings


def register(cli: typer.Typer) -> None:
    cli.command()(generate)
    cli.command()(preview)
    cli.command()(estimate)
    cli.command()(demo)


def _parse_stances(values: list[str]) -> dict[str, float]:
    stances: dict[str, float] = {}
    for value in values:
        name, _, weight = value.partition("=")
        try:
            stances[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise fail(f"--stance {value!r}: use NAME or NAME=WEIGHT, e.g. aligned=3") from None
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
            raise fail(f"--spec {spec_file}: {exc}") from None
        if not isinstance(loaded, dict):
            raise fail(f"--spec {spec_file}: expected a JSON object")
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


def estimate(
    spec_file: SpecFile = None,
    dataset: DatasetOpt = None,
    documents: DocumentsOpt = None,
    stance: StanceOpt = None,
    forms: FormsOpt = None,
    topics: TopicsOpt = None,
    min_words: MinWordsOpt = None,
    max_words: MaxWordsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    team: TeamOpt = LOCAL_TEAM,
) -> None:
    """Expected calls, tokens and cost of a spec (the API's POST /v1/jobs?dry_run=true)."""
    import dataclasses

    from app.core.db import session_scope
    from app.core.settings import get_settings
    from app.jobs import service as jobs

    raw = _build_spec(
        spec_file,
        stance=stance,
        forms=forms,
        topics=topics,
        min_words=min_words,
        max_words=max_words,
        dataset=dataset,
        documents=documents,
        seed=None,
        reasoning_depth=None,
    )
    spec = _validate_spec(raw)
    ensure_schema()
    try:
        with session_scope() as session:
            principal = local_principal(session, "read", team_name=team)
            result = jobs.estimate_job(session, principal, spec, get_settings())
    except PriorForgeError as exc:
        raise fail(exc.detail) from None
    if as_json:
        print(json.dumps(dataclasses.asdict(result)))  # noqa: T201
        return
    console.print(
        f"{result.documents} documents: about {result.items} items, {result.calls} LLM calls "
        f"({result.judge_calls} by the judge), {result.prompt_tokens:,} prompt and "
        f"{result.completion_tokens:,} completion tokens, ${result.cost_usd:,.4f} "
        f"(at most ${result.worst_case_cost_usd:,.4f})"
    )
    for assumption in result.assumptions:
        console.print(f"  assuming {assumption}", highlight=False)


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
        raise fail(f"--items must be between 1 and {prompting.MAX_PREVIEW_ITEMS}")
    ensure_schema()
    try:
        with session_scope() as session:
            principal = local_principal(session, "read", team_name=team)
            previews = prompting.preview(session, principal, spec, items)
    except PriorForgeError as exc:
        raise fail(exc.detail) from None
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
        raise fail(f"invalid job spec: {problems}") from None


# Tuned for the bundled 135M model on a CPU: shorter documents, a frequency penalty against
# its repetition loops, and room for the rejections a model that small produces.
DEMO_SPEC: dict[str, Any] = {
    "dataset": "demo",
    "documents": 8,
    "stances": {"aligned": 1},
    "surface_forms": ["news_report", "forum_thread", "lecture_transcript", "short_story"],
    "length_words": {"min": 40, "max": 700},
    "sampling": {"temperature": 0.8, "top_p": 0.95, "max_tokens": 1000, "frequency_penalty": 0.5},
    "max_attempts_factor": 6,
    "seed": 7,
    "name": "demo",
}


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
    require_storage_url()
    ensure_schema()
    store = open_store()
    dispatcher = LocalDispatcher()
    try:
        with session_scope() as session:
            principal = local_principal(session, team_name=team)
            job, _ = jobs.submit_job(
                session,
                principal,
                spec,
                idempotency_key=None,
                dispatcher=dispatcher,
                settings=settings,
            )
    except PriorForgeError as exc:
        raise fail(exc.detail) from None

    provider = resolve_provider(settings, spec.provider, spec.model)
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
        raise fail(f"the job stopped with an error: {run.error!r}")
    _summary(view, time.monotonic() - started)
    if view.job.status == "succeeded":
        _publish(principal, spec.dataset, store, show_sample=show_sample)
    else:
        raise fail(f"job {view.job.status}: {view.job.error or 'see the summary above'}")


def _start_local_model(provider: Any) -> str:
    from app.llm import local

    with console.status(f"starting the bundled local model ({local.MODEL_NAME}, llama.cpp) …"):
        try:
            server = local.ensure_server(Path(provider.local_log_dir))
        except local.LocalModelUnavailable as exc:
            raise fail(str(exc)) from None
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
            raise fail(f"shard {key} does not match its manifest entry: storage is corrupt")
        console.print(f"  file:     {location(key)}")
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
