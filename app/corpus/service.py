"""A dataset as a corpus: which scenario x form x stance cells it covers and how evenly,
what it copied, and which evaluation items it leaked (and so did not keep)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.corpus import repository
from app.corpus.repository import Summed
from app.datasets.service import require_dataset
from app.models import Dataset
from app.teams.service import Principal

CLUSTERS = 8
COPIES_SHOWN = 3
HITS = 10
HITS_READ = 2_000  # contaminated documents read to name the items leaked most
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


def _group(row: Summed) -> Group:
    return Group(
        row.name, row.aligned, row.misaligned, row.rejected, row.duplicate, row.failed, row.covering
    )


def _totals(rows: list[Summed]) -> Totals:
    total = next((row for row in rows if row.kind == "all"), None)
    if total is None:
        total = Summed("all", "", *([0] * 9))
    return Totals(
        by_status={
            "accepted": total.aligned + total.misaligned,
            "rejected": total.rejected,
            "duplicate": total.duplicate,
            "failed": total.failed,
        },
        accepted_by_stance={"aligned": total.aligned, "misaligned": total.misaligned},
        scenarios=sum(row.kind == "scenario" for row in rows),
        forms=sum(row.kind == "form" for row in rows),
        stances=(total.any_aligned > 0) + (total.any_misaligned > 0),
        covered=total.covered,
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
    leaked_items: list[Any]  # (evaluation item, documents) among ``hits_read`` hits
    hits: int
    hits_read: int
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
    rows = repository.summed(session, dataset.id)
    hits, read, leaked = repository.contamination_hits(session, dataset.id, HITS, HITS_READ)
    scenarios = sorted(
        (_group(row) for row in rows if row.kind == "scenario"),
        key=lambda group: (group.accepted if fewest_first else -group.accepted, group.name),
    )
    forms = sorted(
        (_group(row) for row in rows if row.kind == "form"),
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
        totals=_totals(rows),
        scenarios=scenarios[offset : offset + page],
        more_scenarios=len(scenarios) > offset + page,
        forms=forms,
        clusters=clusters,
        leaked_items=leaked,
        hits=hits,
        hits_read=read,
        contaminated=repository.contaminated(session, dataset.id, 3),
    )
