"""The corpus page: its numbers are the documents', its clusters and leaks are real ones."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.core.db import session_scope
from app.models import Document
from tests.admin.test_session import sign_in
from tests.conftest import Team, run_local, spec
from tests.generation.test_judge_and_decontam import heldout_situation
from tests.llm_server import FaultConfig, LLMTestServer


def cell_text(page: str, test_id: str) -> str:
    found = re.search(rf'data-testid="{test_id}">([^<]*)<', page)
    assert found is not None, test_id
    return found.group(1)


def rows_of(page: str, test_id: str) -> list[list[str]]:
    table = re.search(rf'data-testid="{test_id}">(.*?)</table>', page, re.S)
    assert table is not None, test_id
    body = table.group(1).split("<tbody>")[1]
    return [
        re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in body.split("</tr>") if "<td" in row
    ]


def test_the_corpus_page_counts_cells_balance_clusters_and_leaks(
    browser: TestClient, llm: LLMTestServer, team: Team, settings: Any, store: Any
) -> None:
    serial = settings.model_copy(update={"llm_concurrency": 1})
    scenario_id, situation = heldout_situation()
    llm.reset(FaultConfig(leak_text=situation))
    llm.faults.script.extend(["duplicate"])  # the text the next job copies
    lengths = {"min": 40, "max": 600}  # the leak fits; the copies are as long as the original
    first = run_local(
        team, spec(documents=6, dataset="corpus", length_words=lengths), serial, store
    )
    # The next job's first two replies copy the first's item 0; the third leaks an
    # evaluation item.
    llm.faults.script.extend(["duplicate", "duplicate", "leak"])
    raw = spec(documents=4, dataset="corpus", seed=2, length_words=lengths)
    second = run_local(team, raw, serial, store)
    assert second.progress.duplicates == 2
    assert second.progress.rejected == {"contaminated": 1}

    sign_in(browser, team.keys["admin"])
    page = browser.get("/admin/corpus?dataset=corpus")
    assert page.status_code == 200
    text = page.text
    with session_scope() as session:
        docs = session.execute(
            select(
                Document.scenario_id, Document.surface_form, Document.stance, Document.status
            ).where(Document.dataset_id == first.job.dataset_id)
        ).all()
    accepted = [d for d in docs if d.status == "accepted"]
    assert cell_text(text, "corpus-accepted") == str(len(accepted)) == "10"
    stances = Counter(d.stance for d in accepted)
    assert cell_text(text, "misaligned-share") == f"{100 * stances['misaligned'] / 10:.1f}%"
    cells = {(d.scenario_id, d.surface_form, d.stance) for d in accepted}
    scenarios = {d.scenario_id for d in docs}
    forms = {d.surface_form for d in docs}
    possible = len(scenarios) * len(forms) * len({d.stance for d in docs})
    assert cell_text(text, "cells-covered") == f"{len(cells)} of {possible}"

    # Every scenario once, fewest accepted first, its numbers the documents'.
    listed = rows_of(text, "scenarios")
    assert sorted(row[0] for row in listed) == sorted(scenarios)
    per_scenario = [int(row[1]) + int(row[2]) for row in listed]
    assert per_scenario == sorted(per_scenario)
    for name, aligned, misaligned, covering, rejected, duplicate in listed:
        mine = [d for d in docs if d.scenario_id == name]
        ok = [d for d in mine if d.status == "accepted"]
        assert int(aligned) == sum(d.stance == "aligned" for d in ok)
        assert int(misaligned) == sum(d.stance == "misaligned" for d in ok)
        assert int(covering) == len({d.surface_form for d in ok})
        assert int(rejected) == sum(d.status == "rejected" for d in mine)
        assert int(duplicate) == sum(d.status == "duplicate" for d in mine)
    assert sum(int(row[1]) + int(row[2]) for row in rows_of(text, "forms")) == 10

    # The cluster: the first job's item 0 and its two copies.
    with session_scope() as session:
        original = session.scalars(
            select(Document.id).where(Document.job_id == first.job.id, Document.item_index == 0)
        ).one()
    assert f'href="/admin/documents/{original}"' in text
    assert "2 copies turned away" in text
    leaked = rows_of(text, "leaked-items")
    assert leaked == [[f"scenario:{scenario_id}", "1"]]
    assert "1 document rejected for leaking an evaluation item." in text

    most = browser.get("/admin/corpus?dataset=corpus&order=most").text
    per_scenario = [int(row[1]) + int(row[2]) for row in rows_of(most, "scenarios")]
    assert per_scenario == sorted(per_scenario, reverse=True)


def test_the_corpus_page_refuses_what_it_cannot_show(browser: TestClient, team: Team) -> None:
    sign_in(browser, team.keys["admin"])
    empty = browser.get("/admin/corpus")
    assert empty.status_code == 200
    assert "No datasets yet" in empty.text
    assert browser.get("/admin/corpus?dataset=nope").status_code == 404
    assert browser.get("/admin/corpus?dataset=x&order=random").status_code == 422
    assert browser.get("/admin/corpus?dataset=x&offset=-1").status_code == 422
