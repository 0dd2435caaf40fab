"""Evaluation sets: registration, listing, and the contamination index a job checks against."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.errors import Conflict, InvalidRequest, NotFound, UnknownReference
from app.dedup.minhash import normalise
from app.evalsets import repository
from app.evalsets.items import EvalSetError, RepeatedIds, content_sha256, parse_jsonl
from app.jobs import repository as job_rows
from app.jobs.spec import Decontam
from app.models import EvalSet
from app.quality.decontam import MIN_WORDS, ContaminationIndex
from app.scenarios.bank import Scenario, Split
from app.teams.service import Principal


def register(session: Session, principal: Principal, name: str, body: str) -> tuple[EvalSet, int]:
    """Store a new set from JSONL, all lines or none; return it and its too-short item count."""
    try:
        items = parse_jsonl(body)
    except RepeatedIds as exc:
        raise Conflict(
            f"{len(exc.errors)} item id(s) repeat; nothing was registered", errors=exc.errors
        ) from None
    except EvalSetError as exc:
        raise InvalidRequest(
            f"{len(exc.errors)} invalid line(s); nothing was registered", errors=exc.errors
        ) from None
    if not items:
        raise InvalidRequest('the body holds no items: send one {"text": ...} object per line')
    if repository.by_name(session, principal.team_id, name) is not None:
        raise Conflict(f"an evaluation set named {name!r} exists; sets are immutable: "
                       "delete it first or choose another name")  # fmt: skip
    try:
        with session.begin_nested():
            row = repository.add_set(session, principal.team_id, name, items, content_sha256(items))
    except IntegrityError:
        raise Conflict(f"another upload registered {name!r} at the same moment") from None
    too_short = sum(len(normalise(i.text).split()) < MIN_WORDS for i in items)
    return row, too_short


def get(session: Session, principal: Principal, name: str) -> EvalSet:
    row = repository.by_name(session, principal.team_id, name)
    if row is None:
        raise NotFound(f"no evaluation set named {name!r}")
    return row


def list_sets(session: Session, principal: Principal) -> Sequence[EvalSet]:
    return repository.team_sets(session, principal.team_id)


def delete(session: Session, principal: Principal, name: str) -> None:
    """Remove a set, unless a job still running checks documents against it by name.

    The row lock waits for a submission naming the set (which holds it shared) to commit,
    so that job is seen below.
    """
    row = repository.by_name(session, principal.team_id, name, for_update=True)
    if row is None:
        raise NotFound(f"no evaluation set named {name!r}")
    for job_id, spec in job_rows.active_job_specs(session, principal.team_id):
        if name in ((spec.get("decontam") or {}).get("eval_sets") or ()):
            raise Conflict(f"job {job_id} is running and checks against {name!r}; "
                           "cancel it or wait for it to finish")  # fmt: skip
    repository.delete_set(session, row.id)


def selected_sets(session: Session, team_id: uuid.UUID, decontam: Decontam) -> list[EvalSet]:
    """The sets a job checks: the named ones (each must exist), or all of the team's."""
    if decontam.eval_sets is None:
        return list(repository.team_sets(session, team_id))
    # Named sets stay until this transaction ends: a delete cannot slip in before the job
    # that names them is committed.
    sets = repository.team_sets(session, team_id, for_share=True)
    by_name = {s.name: s for s in sets}
    missing = [name for name in decontam.eval_sets if name not in by_name]
    if missing:
        known = ", ".join(sorted(by_name)) or "none registered"
        raise UnknownReference(
            f"decontam.eval_sets names unknown set(s) {missing}; this team has: {known}"
        )
    return [by_name[name] for name in decontam.eval_sets]


def scenario_items(scenarios: Sequence[Scenario]) -> list[tuple[str, str]]:
    """Each held-out scenario's situation and both actions, as separate items."""
    return [
        (f"scenario:{s.id}{suffix}", text)
        for s in scenarios
        if s.split is Split.HELDOUT
        for suffix, text in (
            ("", s.situation),
            (":aligned_action", s.aligned_action),
            (":misaligned_action", s.misaligned_action),
        )
    ]


_CACHE_SIZE = 4
_cache: OrderedDict[tuple[object, ...], ContaminationIndex] = OrderedDict()
_cache_lock = threading.Lock()


def contamination_index(
    session: Session,
    team_id: uuid.UUID,
    decontam: Decontam,
    bank: Sequence[Scenario],
    sets: Sequence[EvalSet] | None = None,
) -> ContaminationIndex | None:
    """The index for a job's decontamination settings, built once per process and content.

    Keyed by the content hashes of what goes in, so a newly registered set or scenario is
    picked up by the next chunk, and an unchanged one costs one small query (none when the
    caller has already selected ``sets``).
    """
    if not decontam.enabled:
        return None
    held = scenario_items(bank) if decontam.heldout_scenarios else []
    if sets is None:
        sets = selected_sets(session, team_id, decontam)
    held_sha = hashlib.sha256(repr(held).encode()).hexdigest()
    key = (team_id, decontam.ngram, held_sha, tuple((s.id, s.sha256) for s in sets))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    index = ContaminationIndex(_items(session, held, sets), n=decontam.ngram)
    with _cache_lock:
        _cache[key] = index
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return index


def _items(
    session: Session, held: list[tuple[str, str]], sets: Sequence[EvalSet]
) -> Iterator[tuple[str, str]]:
    yield from held
    for eval_set in sets:
        for item_id, text in repository.texts(session, eval_set.id):
            yield f"eval:{eval_set.name}:{item_id}", text
