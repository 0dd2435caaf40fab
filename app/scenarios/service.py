"""Scenario use cases: the bank a team sees (built-in + its own), import, listing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.errors import Conflict, InvalidRequest
from app.core.jsonl import numbered_lines
from app.scenarios import repository
from app.scenarios.bank import BankError, Scenario, builtin_bank, parse_jsonl
from app.teams.service import Principal

MAX_IMPORT_LINES = 20_000


@dataclass(frozen=True)
class BankEntry:
    scenario: Scenario
    origin: str  # "builtin" or "team"


def team_bank(session: Session, team_id: uuid.UUID) -> list[Scenario]:
    """Every scenario a team's jobs may select from: the built-in bank and its own."""
    own = [repository.to_scenario(row) for row in repository.team_scenarios(session, team_id)]
    return [*builtin_bank(), *own]


def import_jsonl(
    session: Session, principal: Principal, body: str, *, job_id: uuid.UUID | None = None
) -> list[Scenario]:
    """Validate every line, then store all of them, or none: errors name their line."""
    if sum(1 for _line in numbered_lines(body)) > MAX_IMPORT_LINES:
        raise InvalidRequest(f"at most {MAX_IMPORT_LINES} scenarios per import; split the file")
    try:
        scenarios = parse_jsonl(body)
    except BankError as exc:
        raise InvalidRequest(
            f"{len(exc.errors)} invalid line(s); nothing was imported",
            errors=[_line_error(e) for e in exc.errors],
        ) from None
    if not scenarios:
        raise InvalidRequest("the body holds no scenarios: send one JSON object per line")
    errors = _conflicts(session, principal.team_id, body, scenarios)
    if errors:
        raise Conflict(
            f"{len(errors)} scenario id(s) are taken; nothing was imported", errors=errors
        )
    try:
        with session.begin_nested():
            repository.add_scenarios(session, principal.team_id, scenarios, job_id)
    except IntegrityError:
        raise Conflict(
            "another import added some of these scenario ids at the same moment; "
            "nothing was imported, list the bank and retry"
        ) from None
    return scenarios


def _line_error(message: str) -> dict[str, object]:
    head, _, rest = message.partition(": ")
    number = head.removeprefix("line ")
    return {"line": int(number), "message": rest} if number.isdigit() else {"message": message}


def _conflicts(
    session: Session, team_id: uuid.UUID, body: str, scenarios: list[Scenario]
) -> list[dict[str, object]]:
    builtin_ids = {s.id for s in builtin_bank()}
    taken = repository.existing_ids(session, team_id, [s.id for s in scenarios])
    line_of = _line_numbers(body)
    errors: list[dict[str, object]] = []
    first_line: dict[str, int] = {}
    for position, scenario in enumerate(scenarios):
        line = line_of[position]
        if scenario.id in builtin_ids:
            reason = f"id {scenario.id!r} is a built-in scenario; choose another id"
        elif scenario.id in taken:
            reason = f"id {scenario.id!r} was imported before; scenarios are immutable"
        elif scenario.id in first_line:
            reason = f"id {scenario.id!r} repeats line {first_line[scenario.id]}"
        else:
            first_line[scenario.id] = line
            continue
        errors.append({"line": line, "message": reason})
    return errors


def _line_numbers(body: str) -> list[int]:
    return [number for number, _line in numbered_lines(body)]


def list_scenarios(
    session: Session,
    principal: Principal,
    *,
    split: str | None,
    topic: str | None,
    origin: str | None,
    after: str | None,
    limit: int,
) -> tuple[list[BankEntry], str | None]:
    own = {
        row.scenario_id: repository.to_scenario(row)
        for row in repository.team_scenarios(session, principal.team_id)
    }
    entries = [BankEntry(s, "builtin") for s in builtin_bank()]
    entries += [BankEntry(s, "team") for s in own.values()]
    selected = sorted(
        (
            e
            for e in entries
            if (split is None or e.scenario.split.value == split)
            and (topic is None or topic in {t.value for t in e.scenario.topics})
            and (origin is None or e.origin == origin)
            and (after is None or e.scenario.id > after)
        ),
        key=lambda e: e.scenario.id,
    )
    page = selected[:limit]
    return page, (page[-1].scenario.id if len(selected) > limit else None)
