"""The per-dataset lock around near-duplicate decisions, on PostgreSQL, made deterministic:
one write batch holds its transaction open while another near copy arrives."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from sqlalchemy.orm import Session

from app.core.db import get_engine
from tests.dedup import factory


def test_a_near_copy_waits_for_the_open_batch_and_is_caught_as_its_duplicate() -> None:
    engine = get_engine()
    original = factory.text("the original")
    with Session(engine) as session:
        made = factory.dataset(session, items=8)
        # A first batch pins the dataset's algorithm (an UPDATE of the dataset row, which
        # serialises a fresh dataset's first batches whether or not the lock is taken).
        factory.write_batch(session, made, [factory.text("unrelated")])
        session.commit()

    first = Session(engine)
    [(kept, match)] = factory.write_batch(first, made, [factory.near_copy(original, seed=1)])
    assert match is None  # in, but not committed: the batch's transaction is still open

    outcome: list[tuple[uuid.UUID, Any]] = []
    failures: list[BaseException] = []

    def second_batch() -> None:
        try:
            with Session(engine) as session:
                outcome.extend(
                    factory.write_batch(session, made, [factory.near_copy(original, seed=2)])
                )
                session.commit()
        except BaseException as exc:  # reported below
            failures.append(exc)

    racer = threading.Thread(target=second_batch)
    racer.start()
    racer.join(2.0)
    # Without the lock the second batch would have read the index without the open batch's
    # copy, accepted its own, and committed by now.
    assert racer.is_alive(), "the second batch decided while the first held its transaction"
    first.commit()
    first.close()
    racer.join(30)
    assert not failures, failures
    [(_copy, caught)] = outcome
    assert caught is not None
    assert caught[0] == kept
