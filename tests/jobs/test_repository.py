"""The job repository's statements, each on two jobs at once: what one job's call changes,
what it leaves alone (the other job above all), and where each time boundary sits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from app.core.db import session_scope
from app.jobs import repository
from app.models import Document, Job, WorkItem
from tests.dedup import factory

T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def jobs() -> tuple[factory.Seeded, factory.Seeded]:
    """Two jobs of six pending items each, enqueued at T0; the second one is the witness."""
    with session_scope() as session:
        pair = factory.dataset(session, items=6), factory.dataset(session, items=6)
        for made in pair:
            session.execute(
                update(WorkItem).where(WorkItem.job_id == made.job_id).values(enqueued_at=T0)
            )
            session.execute(update(Job).where(Job.id == made.job_id).values(status="running"))
    return pair


def items(session: Session, job_id: uuid.UUID) -> list[tuple[Any, ...]]:
    return [
        tuple(row)
        for row in session.execute(
            select(
                WorkItem.item_index,
                WorkItem.state,
                WorkItem.lease_owner,
                WorkItem.lease_expires_at,
                WorkItem.enqueued_at,
                WorkItem.updated_at,
            )
            .where(WorkItem.job_id == job_id)
            .order_by(WorkItem.item_index)
        )
    ]


def set_items(session: Session, made: factory.Seeded, indices: list[int], **values: Any) -> None:
    """Put some of a job's items in a state the repository would not produce on its own."""
    session.execute(
        update(WorkItem)
        .where(WorkItem.job_id == made.job_id, WorkItem.item_index.in_(indices))
        .values(**values)
    )


def lease_all(session: Session, made: factory.Seeded, owner: str, expires: datetime) -> None:
    leased = repository.lease_items(session, made.job_id, 0, 6, owner, T0, expires)
    assert [item.index for item in leased] == list(range(6))


def test_leases_are_extended_for_the_owner_and_the_job_named_only(
    jobs: tuple[factory.Seeded, factory.Seeded],
) -> None:
    mine, other = jobs
    with session_scope() as session:
        lease_all(session, mine, "w1", at(60))
        lease_all(session, other, "w1", at(60))
        set_items(session, mine, [2], lease_owner="w2")
        before = items(session, other.job_id)
        repository.extend_leases(session, mine.job_id, [0, 2, 3], "w1", at(120))
        expiries = [row[3] for row in items(session, mine.job_id)]
        assert expiries == [at(120), at(60), at(60), at(120), at(60), at(60)]
        assert items(session, other.job_id) == before


def test_only_the_jobs_leases_expired_before_now_return_to_pending(
    jobs: tuple[factory.Seeded, factory.Seeded],
) -> None:
    mine, other = jobs
    with session_scope() as session:
        lease_all(session, mine, "w1", at(60))
        lease_all(session, other, "w1", at(10))
        set_items(session, mine, [1, 4], lease_expires_at=at(10))
        set_items(session, mine, [5], lease_expires_at=at(30))  # expires exactly now: not stale
        before = items(session, other.job_id)
        assert repository.expire_stale_leases(session, mine.job_id, at(30)) == [1, 4]
        rows = items(session, mine.job_id)
        assert rows[1][1:5] == ("pending", None, None, at(30))
        assert rows[4][1:5] == ("pending", None, None, at(30))
        assert [row[1] for row in rows] == ["leased", "pending", "leased", "leased", "pending",
                                            "leased"]  # fmt: skip
        assert items(session, other.job_id) == before


def test_lease_next_takes_lapsed_leases_then_the_lowest_pending_items_up_to_its_limit(
    jobs: tuple[factory.Seeded, factory.Seeded],
) -> None:
    """Exactly ``limit`` of them, never the whole job: as an IN (subquery) the LIMIT was run
    again for every row updated, and one call leased every pending item."""
    mine, other = jobs
    with session_scope() as session:
        repository.lease_items(session, mine.job_id, 0, 1, "w1", T0, at(60))  # live lease
        repository.lease_items(session, mine.job_id, 2, 3, "w1", T0, at(10))  # runs out
        set_items(session, mine, [4], state="done")
        before = items(session, other.job_id)
        leased = repository.lease_next(session, mine.job_id, "w2", at(30), at(90), 2)
        assert [(item.index, item.attempts) for item in leased] == [(2, 2), (1, 1)]
        leased = repository.lease_next(session, mine.job_id, "w3", at(30), at(90), 5)
        assert [item.index for item in leased] == [3, 5]
        assert repository.lease_next(session, mine.job_id, "w3", at(30), at(90), 5) == []
        owners = [row[2] for row in items(session, mine.job_id)]
        assert owners == ["w1", "w2", "w2", "w3", None, "w3"]
        assert items(session, other.job_id) == before


def test_lease_orphans_takes_only_lapsed_leases_up_to_its_limit(
    jobs: tuple[factory.Seeded, factory.Seeded],
) -> None:
    mine, other = jobs
    with session_scope() as session:
        lease_all(session, mine, "w1", at(10))
        lease_all(session, other, "w1", at(10))
        set_items(session, mine, [1], lease_expires_at=at(60))  # still live
        set_items(session, mine, [5], state="pending", lease_owner=None)
        before = items(session, other.job_id)
        leased = repository.lease_orphans(session, mine.job_id, "w2", at(30), at(90), 2)
        assert [item.index for item in leased] == [0, 2]
        leased = repository.lease_orphans(session, mine.job_id, "w2", at(30), at(90), 10)
        assert [item.index for item in leased] == [3, 4]  # not the live lease, not pending
        assert items(session, other.job_id) == before


def test_stale_pending_items_are_the_jobs_pending_ones_sent_before_the_cutoff(
    jobs: tuple[factory.Seeded, factory.Seeded],
) -> None:
    mine, other = jobs
    with session_scope() as session:
        repository.lease_items(session, mine.job_id, 0, 1, "w1", T0, at(60))  # item 0 leased
        repository.mark_enqueued(session, mine.job_id, [3], at(30))  # sent exactly at the cutoff
        repository.mark_enqueued(session, mine.job_id, [4], at(40))
        assert repository.stale_pending(session, mine.job_id, at(30), 10) == [1, 2, 5]
        assert repository.stale_pending(session, mine.job_id, at(30), 2) == [1, 2]
        enqueued = [row[4] for row in items(session, other.job_id)]
        assert enqueued == [T0] * 6  # mark_enqueued touched the named job only


def test_a_result_closes_one_item_of_the_job_named_once(
    jobs: tuple[factory.Seeded, factory.Seeded],
) -> None:
    mine, other = jobs
    with session_scope() as session:
        lease_all(session, mine, "w1", at(60))
        lease_all(session, other, "w1", at(60))
        before = items(session, other.job_id)
        assert repository.record_item_result(session, mine.job_id, 2, "done", {"ok": 1}, at(5))
        assert not repository.record_item_result(session, mine.job_id, 2, "failed", {}, at(6))
        row = items(session, mine.job_id)[2]
        assert row[1:4] == ("done", None, None)
        assert row[5] == at(5)
        assert items(session, other.job_id) == before


def test_cancelling_closes_the_jobs_open_items_only(
    jobs: tuple[factory.Seeded, factory.Seeded],
) -> None:
    mine, other = jobs
    with session_scope() as session:
        repository.lease_items(session, mine.job_id, 0, 2, "w1", T0, at(60))
        repository.finish_items(session, mine.job_id, [5], "done", at(1))
        before = items(session, other.job_id)
        assert repository.cancel_items(session, mine.job_id, at(9)) == 5
        rows = items(session, mine.job_id)
        assert [row[1] for row in rows] == ["cancelled"] * 5 + ["done"]
        assert {row[2:4] for row in rows} == {(None, None)}
        assert {row[5] for row in rows[:5]} == {at(9)}
        assert items(session, other.job_id) == before


@pytest.mark.parametrize("claim", ["finalization", "reconcile"])
def test_a_claim_is_taken_once_until_it_is_stale_and_only_on_the_job_named(
    jobs: tuple[factory.Seeded, factory.Seeded], claim: str
) -> None:
    mine, other = jobs
    take = getattr(repository, f"claim_{claim}")
    column = getattr(Job, "finalizing_at" if claim == "finalization" else "reconciled_at")
    with session_scope() as session:
        assert take(session, mine.job_id, at(0), at(-100))
        assert session.scalar(select(column).where(Job.id == mine.job_id)) == at(0)
        assert session.scalar(select(column).where(Job.id == other.job_id)) is None
        assert not take(session, mine.job_id, at(50), at(0))  # taken at exactly the cutoff
        assert take(session, mine.job_id, at(60), at(1))  # stale: taken over
        assert session.scalar(select(column).where(Job.id == mine.job_id)) == at(60)
        session.execute(update(Job).where(Job.id == other.job_id).values(status="succeeded"))
        assert not take(session, other.job_id, at(70), at(1000))


def test_documents_and_items_page_by_index_within_the_job(
    jobs: tuple[factory.Seeded, factory.Seeded],
) -> None:
    mine, other = jobs
    with session_scope() as session:
        ids = [
            factory.document(session, mine, factory.text(f"d{i}"), status=status)
            for i, status in enumerate(["accepted", "rejected", "accepted", "accepted"])
        ]
        factory.document(session, other, factory.text("other"))
        page = repository.list_documents(session, mine.job_id, status=None, after_index=0, limit=2)
        assert [d.id for d in page] == ids[1:3]
        accepted = repository.list_documents(
            session, mine.job_id, status="accepted", after_index=-1, limit=10
        )
        assert [d.id for d in accepted] == [ids[0], ids[2], ids[3]]
        listed = repository.list_items(session, mine.job_id, after_index=2, limit=2)
        assert [(i.job_id, i.item_index) for i in listed] == [(mine.job_id, 3), (mine.job_id, 4)]
        found = repository.get_document(session, mine.team_id, ids[2])
        assert found is not None
        assert found.id == ids[2]
        repository.mark_duplicates(
            session,
            [{"id": ids[3], "duplicate_of": ids[0], "reason": "near",
              "detail": "estimated Jaccard 0.91"}],
        )  # fmt: skip
        row = session.get(Document, ids[3])
        assert row is not None
        assert (row.status, row.reason, row.duplicate_of, row.detail) == (
            "duplicate", "near", ids[0], "estimated Jaccard 0.91",
        )  # fmt: skip


def test_an_idempotency_key_finds_its_own_job_and_listing_filters_by_status_and_dataset(
    jobs: tuple[factory.Seeded, factory.Seeded],
) -> None:
    mine, _other = jobs
    with session_scope() as session:
        second = uuid.uuid4()
        session.execute(
            insert(Job).values(
                id=second, team_id=mine.team_id, dataset_id=None, spec={}, requested=1,
                max_items=1, idempotency_key="key-2", status="queued",
            )
        )  # fmt: skip
        session.execute(update(Job).where(Job.id == mine.job_id).values(idempotency_key="key-1"))
        found = repository.get_job_by_idempotency_key(session, mine.team_id, "key-2")
        assert found is not None
        assert found.id == second
        queued = repository.list_jobs(
            session, mine.team_id, status="queued", dataset_id=None, before=None, limit=10
        )
        assert [row[0].id for row in queued] == [second]
        in_dataset = repository.list_jobs(
            session, mine.team_id, status=None, dataset_id=mine.dataset_id, before=None, limit=10
        )
        assert [row[0].id for row in in_dataset] == [mine.job_id]


def job_row(session: Session, job_id: uuid.UUID) -> tuple[Any, ...]:
    row = session.execute(
        select(Job.status, Job.updated_at, Job.finalizing_at, Job.planned_items).where(
            Job.id == job_id
        )
    ).one()
    return tuple(row)


def test_job_row_statements_change_the_job_named_only(
    jobs: tuple[factory.Seeded, factory.Seeded],
) -> None:
    mine, other = jobs
    with session_scope() as session:
        before = job_row(session, other.job_id)
        assert repository.transition(session, mine.job_id, ("running",), status="cancelled")
        assert not repository.transition(session, mine.job_id, ("running",), status="failed")
        repository.touch_job(session, mine.job_id, at(7))
        assert job_row(session, mine.job_id)[:2] == ("cancelled", at(7))
        assert job_row(session, other.job_id) == before


def test_a_finalization_claim_is_renewed_by_its_holder_on_a_running_job_only(
    jobs: tuple[factory.Seeded, factory.Seeded],
) -> None:
    mine, other = jobs
    with session_scope() as session:
        for made in jobs:
            assert repository.claim_finalization(session, made.job_id, at(0), at(-1))
        assert repository.renew_finalization(session, mine.job_id, at(0), at(5))
        assert not repository.renew_finalization(session, mine.job_id, at(0), at(6))  # stale
        assert job_row(session, mine.job_id)[2] == at(5)
        assert job_row(session, other.job_id)[2] == at(0)
        repository.transition(session, mine.job_id, ("running",), status="cancelled")
        assert not repository.renew_finalization(session, mine.job_id, at(5), at(9))


def test_planning_is_a_compare_and_set_on_the_named_active_job(
    jobs: tuple[factory.Seeded, factory.Seeded],
) -> None:
    mine, other = jobs
    with session_scope() as session:
        assert repository.advance_planned(session, mine.job_id, 0, 4)
        assert not repository.advance_planned(session, mine.job_id, 0, 8)  # someone planned
        assert (job_row(session, mine.job_id)[3], job_row(session, other.job_id)[3]) == (4, 0)
        repository.transition(session, mine.job_id, ("running",), status="cancelled")
        assert not repository.advance_planned(session, mine.job_id, 4, 8)


def test_new_items_are_pending_and_stamped_with_the_time_given(
    jobs: tuple[factory.Seeded, factory.Seeded],
) -> None:
    mine, _other = jobs
    with session_scope() as session:
        repository.add_work_items(session, mine.job_id, [{"index": 6}, {"index": 7}], at(3))
        rows = items(session, mine.job_id)[6:]
        assert rows == [(i, "pending", None, None, at(3), at(3)) for i in (6, 7)]


def test_leasing_takes_the_range_given_and_leases_that_have_expired(
    jobs: tuple[factory.Seeded, factory.Seeded],
) -> None:
    mine, _other = jobs
    with session_scope() as session:
        leased = repository.lease_items(session, mine.job_id, 2, 4, "w1", at(0), at(10))
        assert [(i.index, i.attempts) for i in leased] == [(2, 1), (3, 1)]
        assert items(session, mine.job_id)[2][1:] == ("leased", "w1", at(10), T0, at(0))
        repository.lease_items(session, mine.job_id, 4, 5, "w1", at(0), at(20))
        # At 20 s: item 2's and 3's leases ran out at 10 s, item 4's runs out just now.
        again = repository.lease_items(session, mine.job_id, 0, 6, "w2", at(20), at(30))
        assert [(i.index, i.attempts) for i in again] == [(0, 1), (1, 1), (2, 2), (3, 2), (5, 1)]
        repository.finish_items(session, mine.job_id, [0, 1], "done", at(25))
        assert repository.lease_items(session, mine.job_id, 0, 2, "w3", at(99), at(100)) == []


def test_finishing_and_reading_documents_stay_within_the_job(
    jobs: tuple[factory.Seeded, factory.Seeded],
) -> None:
    mine, other = jobs
    with session_scope() as session:
        for made in jobs:
            lease_all(session, made, "w1", at(60))
        factory.document(session, mine, factory.text("mine"))  # item 0
        factory.document(session, mine, factory.text("mine too"))  # item 1
        for name in ("other 0", "other 1"):  # items 0 and 1
            factory.document(session, other, factory.text(name))
        before = items(session, other.job_id)
        repository.finish_items(session, mine.job_id, [1, 2], "failed", at(8))
        assert items(session, mine.job_id)[1][1:] == ("failed", None, None, T0, at(8))
        assert items(session, other.job_id) == before
        assert repository.existing_documents(session, mine.job_id, [0, 2, 3]) == {0}
        assert repository.existing_documents(session, mine.job_id, []) == set()


def test_active_jobs_are_the_queued_and_running_ones_and_their_specs_the_teams_own(
    jobs: tuple[factory.Seeded, factory.Seeded],
) -> None:
    mine, other = jobs
    with session_scope() as session:
        session.execute(
            update(Job).where(Job.id == mine.job_id).values(status="queued", spec={"seed": 7})
        )
        assert {mine.job_id, other.job_id} <= set(repository.active_job_ids(session))
        assert repository.active_job_specs(session, mine.team_id) == [(mine.job_id, {"seed": 7})]
        for status in ("succeeded", "failed", "cancelled"):
            session.execute(update(Job).where(Job.id == mine.job_id).values(status=status))
            assert mine.job_id not in repository.active_job_ids(session)
            assert repository.active_job_specs(session, mine.team_id) == []
        assert other.job_id in repository.active_job_ids(session)


def test_releasing_a_claimed_text_frees_it_in_that_dataset_only(
    jobs: tuple[factory.Seeded, factory.Seeded],
) -> None:
    mine, other = jobs
    with session_scope() as session:
        first, second, elsewhere = (
            factory.document(session, made, factory.text(name))
            for made, name in ((mine, "a"), (mine, "b"), (other, "c"))
        )
        claims = {"1" * 64: first, "2" * 64: second}
        assert repository.claim_fingerprints(session, mine.dataset_id, claims) == claims
        claimed = repository.claim_fingerprints(session, other.dataset_id, {"1" * 64: elsewhere})
        assert claimed == {"1" * 64: elsewhere}
        repository.release_fingerprints_of(session, mine.dataset_id, ["1" * 64])
        late = uuid.uuid4()
        again = {"1" * 64: late, "2" * 64: late}
        assert repository.claim_fingerprints(session, mine.dataset_id, again) == {
            "1" * 64: late,  # released: free again
            "2" * 64: second,  # still taken: its owner comes back
        }
        assert repository.claim_fingerprints(session, other.dataset_id, {"1" * 64: late}) == {
            "1" * 64: elsewhere
        }


def document_row(made: factory.Seeded, index: int, **values: Any) -> dict[str, Any]:
    """The values the pipeline gives a failed item's document: no text, no counters."""
    return {
        "id": uuid.uuid5(made.job_id, str(index)),
        "job_id": made.job_id,
        "item_index": index,
        "team_id": made.team_id,
        "dataset_id": made.dataset_id,
        "status": "failed",
        "stance": "aligned",
        "scenario_id": "s",
        "surface_form": "essay",
        "model": "",
        "prompt_sha256": "",
        "template_version": "",
        "meta": {"voice": "plain"},
        "created_at": at(1),
    } | values


def test_document_rows_are_written_once_with_defaults_and_a_redelivery_adds_only_new_ones(
    jobs: tuple[factory.Seeded, factory.Seeded],
) -> None:
    mine, _other = jobs
    signed = bytes(range(16))
    first = [
        document_row(mine, 0),
        document_row(
            mine, 1, status="accepted", text="a text\\ with \t tabs\nand 'quotes'", minhash=signed
        ),
        document_row(mine, 2, contamination={"overlap": 0.5}, cost_usd=0.25),
    ]
    with session_scope() as session:
        assert repository.insert_documents(session, first) == {row["id"] for row in first}
    with session_scope() as session:
        again = [document_row(mine, 2, detail="another delivery"), document_row(mine, 3)]
        assert repository.insert_documents(session, again) == {again[1]["id"]}
    with session_scope() as session:
        rows = session.execute(
            select(
                Document.item_index,
                Document.text,
                Document.minhash,
                Document.prompt_tokens,
                Document.cost_usd,
                Document.detail,
                Document.meta,
                Document.created_at,
                Document.contamination.is_(None),
            )
            .where(Document.job_id == mine.job_id)
            .order_by(Document.item_index)
        ).all()
    assert [tuple(row) for row in rows] == [
        (0, None, None, 0, 0.0, None, {"voice": "plain"}, at(1), True),  # SQL NULL, not JSON null
        (1, first[1]["text"], signed, 0, 0.0, None, {"voice": "plain"}, at(1), True),
        (2, None, None, 0, 0.25, None, {"voice": "plain"}, at(1), False),  # the first delivery's
        (3, None, None, 0, 0.0, None, {"voice": "plain"}, at(1), True),
    ]


def test_a_statement_over_many_items_is_the_same_text_as_over_few(
    jobs: tuple[factory.Seeded, factory.Seeded],
) -> None:
    """The writer's statements keep one text whatever the batch's size: the driver parses a
    statement's text once, and a text per size cost the writer more than the query."""
    from sqlalchemy import event

    mine, _other = jobs
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    with session_scope() as session:
        bind = session.get_bind()
        if bind.dialect.name != "postgresql":
            pytest.fail("these statements are Postgres's; the tests run against Postgres")
        event.listen(bind, "before_cursor_execute", record)
        try:
            texts = []
            for count in (3, 300):
                seen.clear()
                indices = list(range(count))
                repository.finish_items(session, mine.job_id, indices, "done", at(2))
                repository.existing_documents(session, mine.job_id, indices)
                claims = {f"{n:064x}": uuid.uuid4() for n in range(count)}
                repository.claim_fingerprints(session, mine.dataset_id, claims)
                texts.append(list(seen))
        finally:
            event.remove(bind, "before_cursor_execute", record)
    assert len(texts[0]) == 3
    assert texts[0] == texts[1]
