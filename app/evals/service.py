"""Evaluation use cases: ask for one, run it (a worker, or the CLI in-process), read it."""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session

from app.core.db import Sessions, after_commit
from app.core.errors import Conflict, NotFound, UnknownReference
from app.core.settings import EvalEndpoint, Settings
from app.datasets import service as datasets
from app.evals import repository
from app.evals.overlap import NGRAM, overlap_report
from app.evals.questions import Method, Question, formats
from app.evals.scoring import Backend, OpenAICompatible, score_chat, score_cloze, score_letters
from app.evals.spec import EvalSpec
from app.evals.stats import NoOutcomes, Outcome, Summary, summarize
from app.models import EvalRun
from app.models.base import utcnow
from app.scenarios.bank import Scenario, Split
from app.scenarios.service import team_bank
from app.storage import ObjectStore
from app.teams.service import Principal

log = logging.getLogger(__name__)

RUN_EVAL_TASK = "evals.run"
PROGRESS_SECONDS = 1.0
OVERLAP_SHOWN = 10


class Dispatch(Protocol):
    def __call__(self, eval_id: uuid.UUID) -> None: ...


def celery_dispatch(eval_id: uuid.UUID) -> None:
    from workers.celery_app import celery_app

    celery_app.send_task(RUN_EVAL_TASK, args=[str(eval_id)])


def requests_needed(methods: list[Method], items: int) -> int:
    """Calls to the endpoint an evaluation makes: two per (item, format) for the log-prob
    methods (one per option), one for chat."""
    per_item = {Method.LETTER: 2, Method.CLOZE: 2, Method.CHAT: 1}
    return sum(per_item[m] * len(formats(m)) * items for m in methods)


def resolve_questions(bank: list[Scenario], spec: EvalSpec) -> list[Question]:
    """The spec's scenarios from ``bank`` (built-in and the team's) and its imported
    questions; refuses an empty selection and ids that clash."""
    chosen: list[Scenario] = []
    if spec.scenarios is not None:
        selection = spec.scenarios
        by_id = {s.id: s for s in bank}
        if selection.ids:
            unknown = sorted(set(selection.ids) - by_id.keys())
            if unknown:
                raise UnknownReference(f"unknown scenario ids: {', '.join(unknown[:20])}")
            chosen = [by_id[i] for i in dict.fromkeys(selection.ids)]
        else:
            chosen = [s for s in bank if selection.split in ("all", s.split.value)]
        if selection.topics:
            wanted = set(selection.topics)
            chosen = [s for s in chosen if wanted & set(s.topics)]
        if not chosen and not spec.questions:
            raise UnknownReference(
                f"no {selection.split} scenarios match topics "
                f"{', '.join(selection.topics) or 'any'}: widen scenarios.topics or ids"
            )
    questions = [
        Question(s.id, s.situation, s.aligned_action, s.misaligned_action, s.topics[0].value)
        for s in chosen
    ]
    taken = {q.item_id for q in questions}
    clash = sorted(q.id for q in spec.questions if q.id in taken)
    if clash:
        raise UnknownReference(
            f"imported question ids repeat scenario ids: {', '.join(clash[:20])}"
        )
    questions += [
        Question(q.id, q.situation, q.aligned_action, q.misaligned_action, q.topic)
        for q in spec.questions
    ]
    return questions


def trained_scenarios(
    session: Session, principal: Principal, spec: EvalSpec, store: ObjectStore
) -> dict[str, str]:
    """Every scenario id the model was trained on, with where it came from."""
    trained = dict.fromkeys(spec.training_scenarios, "training_scenarios")
    for ref in spec.training_versions:
        _dataset, version = datasets.get_version(session, principal, ref.dataset, ref.version)
        lineage = json.loads(datasets.read_manifest(store, version)).get("lineage", {})
        for scenario_id in lineage.get("scenarios", []):
            trained.setdefault(str(scenario_id), f"{ref.dataset}@{ref.version}")
    return trained


def request_eval(
    session: Session,
    principal: Principal,
    spec: EvalSpec,
    *,
    store: ObjectStore,
    settings: Settings,
    dispatch: Dispatch | None,
    endpoint: EvalEndpoint | None = None,
) -> EvalRun:
    """A new evaluation of ``spec.model``, sent to a worker once the transaction commits
    (``dispatch`` None: the caller runs it, with ``endpoint`` given in-process)."""
    if endpoint is None and spec.model not in settings.eval_endpoints:
        offered = (
            ", ".join(sorted(settings.eval_endpoints)) or "none (set PRIORFORGE_EVAL_ENDPOINTS)"
        )
        raise UnknownReference(
            f"unknown evaluation model {spec.model!r}; this server offers: {offered}"
        )
    bank = team_bank(session, principal.team_id)
    questions = resolve_questions(bank, spec)
    trained = trained_scenarios(session, principal, spec, store)
    leaked = sorted(q.item_id for q in questions if q.item_id in trained)
    if leaked:
        sources = sorted({trained[i] for i in leaked})
        raise Conflict(
            f"{len(leaked)} evaluated scenario(s) were in the model's training data "
            f"({', '.join(sources)}): {', '.join(leaked[:20])}. Evaluate on scenarios it never "
            "saw, e.g. the heldout split"
        )
    # Texts the model may have read: its training scenarios when known, else every train
    # scenario (what any PriorForge corpus is generated from).
    by_id = {s.id: s for s in bank}
    if trained:
        training = [by_id[i] for i in trained if i in by_id]
    else:
        training = [s for s in bank if s.split is Split.TRAIN]
    overlap = overlap_report(
        questions,
        ((s.id, f"{s.situation}\n{s.aligned_action}\n{s.misaligned_action}") for s in training),
    )
    request = spec.model_dump(mode="json") | {
        "items": [asdict(q) for q in questions],
        "trained_scenarios": len(trained),
        "overlap": {
            "ngram": NGRAM,
            "compared_with": "training scenarios" if trained else "the bank's train split",
            "training_texts": len(training),
            "items_with_overlap": sum(1 for o in overlap if o.share > 0),
            "max_share": overlap[0].share if overlap else 0.0,
            "top": [asdict(o) for o in overlap[:OVERLAP_SHOWN] if o.share > 0],
        },
    }
    if endpoint is not None:
        request["endpoint"] = {"base_url": endpoint.base_url, "model": endpoint.model}
    run = repository.add(
        session,
        EvalRun(
            id=uuid.uuid4(),
            team_id=principal.team_id,
            name=spec.name,
            model=spec.model,
            request=request,
            requests_total=requests_needed(spec.methods, len(questions)),
        ),
    )
    if dispatch is not None:
        after_commit(session, lambda: dispatch(run.id))
    return run


def get_eval(session: Session, principal: Principal, eval_id: uuid.UUID) -> EvalRun:
    run = repository.get(session, eval_id)
    if run is None or run.team_id != principal.team_id:
        raise NotFound(f"no evaluation {eval_id}")
    return run


def find_eval(session: Session, eval_id: uuid.UUID) -> EvalRun:
    """An evaluation by id, whoever's (for the process that runs it)."""
    run = repository.get(session, eval_id)
    if run is None:
        raise NotFound(f"no evaluation {eval_id}")
    return run


def list_evals(session: Session, principal: Principal, limit: int = 50) -> list[EvalRun]:
    return list(repository.list_for_team(session, principal.team_id, limit))


def stale_evals(session: Session, settings: Settings) -> list[uuid.UUID]:
    now = utcnow()
    return list(
        repository.stale(
            session,
            now - timedelta(seconds=settings.stall_seconds),
            now - timedelta(seconds=settings.lease_seconds),
        )
    )


# Running an evaluation


class EvalLost(Exception):
    """Another worker took the evaluation over (this one stopped renewing it in time)."""


def backend_for(run: EvalRun, settings: Settings) -> Backend:
    endpoint = settings.eval_endpoints.get(run.model)
    if endpoint is None:
        raise UnknownReference(
            f"evaluation model {run.model!r} is not configured on this worker "
            "(PRIORFORGE_EVAL_ENDPOINTS)"
        )
    return OpenAICompatible(endpoint.base_url, endpoint.model, endpoint.api_key.get_secret_value())


def run_eval(
    eval_id: uuid.UUID,
    *,
    settings: Settings,
    sessions: Sessions,
    backend: Backend | None = None,
) -> str:
    """Claim the evaluation, score every method, store the results; its final status."""
    now = utcnow()
    with sessions() as session:
        if not repository.claim(
            session, eval_id, now, now - timedelta(seconds=settings.lease_seconds)
        ):
            run = repository.get(session, eval_id)
            return run.status if run else "missing"
        run = repository.get(session, eval_id)
        assert run is not None
        session.expunge(run)
    claim = [now]
    done = [0]
    last = [time.monotonic()]

    def progress(count: int) -> None:
        done[0] += count
        if time.monotonic() - last[0] < PROGRESS_SECONDS and done[0] < run.requests_total:
            return
        renewed = utcnow()
        with sessions() as session:
            if not repository.renew(session, eval_id, claim[0], renewed, done[0]):
                raise EvalLost(f"evaluation {eval_id} was taken over by another worker")
        claim[0], last[0] = renewed, time.monotonic()

    own = backend is None  # a backend made here is closed here
    try:
        chosen = backend or backend_for(run, settings)
        try:
            results = evaluate(run, chosen, progress)
        finally:
            if own and isinstance(chosen, OpenAICompatible):
                chosen.close()
    except EvalLost:
        log.warning("evaluation %s was taken over by another worker", eval_id)
        return "running"
    except Exception as exc:
        log.exception("evaluation %s failed", eval_id)
        with sessions() as session:
            repository.finish(session, eval_id, claim[0], status="failed", error=f"{exc}"[:2000])
        return "failed"
    with sessions() as session:
        finished = repository.finish(
            session, eval_id, claim[0], status="succeeded", results=results, done=done[0]
        )
    return "succeeded" if finished else "running"


def evaluate(run: EvalRun, backend: Backend, progress: Any) -> dict[str, Any]:
    questions = [Question(**item) for item in run.request["items"]]
    seed = int(run.request.get("seed", 0))
    results: dict[str, Any] = {}
    for method in (Method(m) for m in run.request["methods"]):
        outcomes = _score(method, backend, questions, progress)
        try:
            results[method.value] = summary_json(summarize(outcomes, seed=seed), method)
        except NoOutcomes as exc:
            results[method.value] = {"error": str(exc), "outcomes": len(outcomes)}
    return results


def _score(
    method: Method, backend: Backend, questions: list[Question], progress: Any
) -> list[Outcome]:
    if method is Method.LETTER:
        return score_letters(backend, questions, progress)
    if method is Method.CLOZE:
        return score_cloze(backend, questions, progress)
    return score_chat(backend, questions, progress)


def summary_json(summary: Summary, method: Method) -> dict[str, Any]:
    body = asdict(summary)
    body["interval_95"] = list(summary.interval_95)
    body["position_bias"] = summary.position_bias
    if method is Method.CLOZE:
        # No options are listed: position does not exist for cloze.
        for key in ("first_position_rate", "order_consistency", "positional_consistency"):
            body.pop(key, None)
        body.pop("positional_guessing", None)
        body.pop("order_pairs", None)
        body.pop("position_bias", None)
    return body
