"""A dataset as a corpus: which scenario x form x stance cells it covers and how evenly,
what it copied, and which evaluation items it leaked (and so did not keep)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.corpus import repository
from app.corpus.repository import Pair
from app.datasets.service import require_dataset
from app.models import Dataset
from app.teams.service import Principal

CLUSTERS = 8
COPIES_SHOWN = 3
HITS = 10
PAGE = 50  # scenarios a page


@dataclass(frozen=True)
class Group:
    """A scenario's or a surface form's documents: accepted by stance, the rest by status."""

    name: str
    aligned: int = 0
    misaligned: int = 0
    rejected: int = 0
    duplicate: int = 0
    failed: int = 0
    covering: int = 0  # forms a scenario has accepted documents in; scenarios a form has

    @property
    def accepted(self) -> int:
        return self.aligned + self.misaligned


@dataclass(frozen=True)
class Totals:
    by_status: dict[str, int]
    accepted_by_stance: dict[str, int]
    scenarios: int  # that the dataset's jobs drew at least one document from
    forms: int
    stances: int
    covered: int  # scenario x form x stance cells with an accepted document


def _grouped(pairs: list[Pair], by: str) -> list[Group]:
    sums: dict[str, list[int]] = {}
    for pair in pairs:
        numbers = sums.setdefault(getattr(pair, by), [0] * 6)
        numbers[0] += pair.aligned
        numbers[1] += pair.misaligned
        numbers[2] += pair.rejected
        numbers[3] += pair.duplicate
        numbers[4] += pair.failed
        numbers[5] += 1 if pair.aligned or pair.misaligned else 0
    return [Group(name, *numbers) for name, numbers in sums.items()]


def _totals(pairs: list[Pair]) -> Totals:
    aligned = sum(pair.aligned for pair in pairs)
    misaligned = sum(pair.misaligned for pair in pairs)
    by_status = {
        "accepted": aligned + misaligned,
        "rejected": sum(pair.rejected for pair in pairs),
        "duplicate": sum(pair.duplicate for pair in pairs),
        "failed": sum(pair.failed for pair in pairs),
    }
    stances = any(pair.any_aligned for pair in pairs) + any(pair.any_misaligned for pair in pairs)
    return Totals(
        by_status=by_status,
        accepted_by_stance={"aligned": aligned, "misaligned": misaligned},
        scenarios=len({pair.scenario_id for pair in pairs}),
        forms=len({pair.surface_form for pair in pairs}),
        stances=stances,
        covered=sum((pair.aligned > 0) + (pair.misaligned > 0) for pair in pairs),
    )


@dataclass(frozen=True)
class Cluster:
    """A document and the copies of it that dedup turned away."""

    original: Any  # (id, job_id, item_index, status, stance, scenario, form, opening) or None
    original_id: uuid.UUID
    copies: int
    shown: list[Any]  # (id, reason, detail, opening)


@dataclass(frozen=True)
class Corpus:
    dataset: Dataset
    totals: Totals
    scenarios: list[Group]
    more_scenarios: bool
    forms: list[Group]
    clusters: list[Cluster]
    leaked_items: list[Any]  # (evaluation item, documents)
    contaminated: list[Any]  # (id, contamination, detail, opening)

    @property
    def accepted(self) -> int:
        return self.totals.by_status.get("accepted", 0)

    @property
    def misaligned_share(self) -> float | None:
        misaligned = self.totals.accepted_by_stance.get("misaligned", 0)
        return misaligned / self.accepted if self.accepted else None

    @property
    def possible_cells(self) -> int:
        return self.totals.scenarios * self.totals.forms * self.totals.stances


def corpus(
    session: Session,
    principal: Principal,
    name: str,
    *,
    fewest_first: bool = True,
    offset: int = 0,
    page: int = PAGE,
) -> Corpus:
    """The team's dataset ``name`` as a corpus; its scenarios a page at a time."""
    dataset = require_dataset(session, principal, name)
    pairs = repository.pairs(session, dataset.id)
    scenarios = sorted(
        _grouped(pairs, "scenario_id"),
        key=lambda group: (group.accepted if fewest_first else -group.accepted, group.name),
    )
    forms = sorted(
        _grouped(pairs, "surface_form"),
        key=lambda group: (group.accepted if fewest_first else -group.accepted, group.name),
    )
    largest = repository.largest_clusters(session, dataset.id, CLUSTERS)
    originals = repository.documents_by_id(session, [row[0] for row in largest])
    copies = repository.copies_of(session, dataset.id, [row[0] for row in largest], COPIES_SHOWN)
    clusters = [
        Cluster(originals.get(original), original, count, copies[original])
        for original, count in largest
    ]
    return Corpus(
        dataset=dataset,
        totals=_totals(pairs),
        scenarios=scenarios[offset : offset + page],
        more_scenarios=len(scenarios) > offset + page,
        forms=forms,
        clusters=clusters,
        leaked_items=repository.contamination_hits(session, dataset.id, HITS),
        contaminated=repository.contaminated(session, dataset.id, 3),
    )
