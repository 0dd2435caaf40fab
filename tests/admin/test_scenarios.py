"""The scenarios and surface forms pages: the bank by split, topic and origin, an import,
and the closed loop's evaluation results."""

from __future__ import annotations

import json
import re
import uuid

from fastapi.testclient import TestClient

from app.core.db import session_scope
from app.models import EvalRun
from app.models.base import utcnow
from app.prompting.catalog import builtin_catalog
from app.scenarios.bank import Split, builtin_bank
from tests.admin.test_session import audit_actions, csrf_of, sign_in
from tests.conftest import Team
from tests.scenarios.test_api import scenario


def rows(page: str, test_id: str) -> list[list[str]]:
    table = re.search(rf'data-testid="{test_id}">(.*?)</table>', page, re.S)
    assert table is not None, test_id
    body = table.group(1).split("<tbody>")[1]
    return [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        for row in body.split("</tr>")
        if "<td" in row
    ]


def test_the_bank_filters_by_split_and_topic_and_pages(browser: TestClient, team: Team) -> None:
    sign_in(browser, team.keys["admin"])
    page = browser.get("/admin/scenarios?split=heldout&topic=sandbagging").text
    listed = rows(page, "scenarios")
    expected = sorted(
        s.id
        for s in builtin_bank()
        if s.split is Split.HELDOUT and "sandbagging" in {t.value for t in s.topics}
    )
    assert [row[0] for row in listed] == expected[:50]
    assert all(row[2] == "heldout" and "sandbagging" in row[1] for row in listed)
    first = browser.get("/admin/scenarios").text
    more = re.search(r'rel="next" href="([^"]+)"', first)
    assert more is not None
    second = browser.get(more.group(1).replace("&amp;", "&")).text
    assert rows(second, "scenarios")[0][0] > rows(first, "scenarios")[-1][0]
    assert browser.get("/admin/scenarios?split=sideways").status_code == 422
    assert "No evaluation has succeeded yet" in first


def test_an_import_stores_every_line_or_none(browser: TestClient, team: Team) -> None:
    sign_in(browser, team.keys["admin"])
    token = csrf_of(browser.get("/admin/scenarios").text)
    sid = f"ops-{uuid.uuid4().hex[:8]}"
    body = json.dumps(scenario(sid))
    added = browser.post("/admin/scenarios", data={"csrf_token": token, "jsonl": body})
    assert added.status_code == 200
    assert "1 scenario imported" in added.text
    assert [row[0] for row in rows(added.text, "scenarios")] == [sid]  # the team's own
    broken = "\n".join([json.dumps(scenario(f"{sid}-2")), '{"id": "half'])
    refused = browser.post("/admin/scenarios", data={"csrf_token": token, "jsonl": broken})
    assert refused.status_code == 422
    assert "nothing was imported" in refused.text
    again = browser.get("/admin/scenarios?origin=team").text
    assert [row[0] for row in rows(again, "scenarios")] == [sid]
    assert audit_actions(team) == ["sign_in", "import_scenarios"]


def test_evaluation_results_show_rates_intervals_topics_and_each_scenarios_rate(
    browser: TestClient, team: Team
) -> None:
    heldout = next(s for s in builtin_bank() if s.split is Split.HELDOUT)
    topic = heldout.topics[0].value
    results = {
        "letter": {
            "items": 40,
            "misaligned_rate": 0.125,
            "interval_95": [0.05, 0.225],
            "per_topic": {topic: {"rate": 0.5, "n": 4}},
            "item_rates": {heldout.id: 0.75},
        }
    }
    with session_scope() as session:
        session.add(
            EvalRun(
                team_id=team.id,
                name="tiny-base+aligned",
                model="runs/7",
                request={},
                status="succeeded",
                results=results,
                finished_at=utcnow(),
            )
        )
    sign_in(browser, team.keys["admin"])
    page = browser.get(f"/admin/scenarios?split=heldout&topic={topic}").text
    assert rows(page, "eval-results")[0][1:] == ["letter", "12.5%", "5.0–22.5%", "40"]
    (by_topic,) = [row for row in rows(page, "eval-topics") if row[0] == topic.replace("_", " ")]
    assert by_topic[1] == "50% (4)"
    (mine,) = [row for row in rows(page, "scenarios") if row[0] == heldout.id]
    assert mine[4] == "75%"


def test_the_surface_forms_page_lists_the_catalog(browser: TestClient, team: Team) -> None:
    sign_in(browser, team.keys["admin"])
    page = browser.get("/admin/forms").text
    assert len(rows(page, "forms")) == len(builtin_catalog())
    assert set(re.findall(r"<br><code>([a-z_]+)</code>", page)) == set(builtin_catalog())
