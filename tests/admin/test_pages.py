"""The dashboard's pages over HTTP: what they refuse and what each action leaves behind."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from tests.admin.test_session import audit_actions, csrf_of, sign_in
from tests.conftest import Team, run_local


def test_a_bad_form_value_is_a_page_that_says_what_to_fix(browser: TestClient, team: Team) -> None:
    sign_in(browser, team.keys["admin"])
    token = csrf_of(browser.get("/admin/keys").text)
    refused = browser.post("/admin/keys", data={"csrf_token": token, "role": "owner"})
    assert refused.status_code == 422
    assert "unknown role &#39;owner&#39;; one of read, submit, admin, operator" in refused.text
    too_long = browser.post(
        "/admin/keys", data={"csrf_token": token, "role": "read", "expires_in_days": "99999"}
    )
    assert too_long.status_code == 422
    assert "expiry in days must be 1-3650" in too_long.text
    nul = browser.post("/admin/keys", data={"csrf_token": token, "role": "read", "name": "a\x00b"})
    assert nul.status_code == 422
    assert audit_actions(team) == ["sign_in"]


def test_the_key_form_offers_only_the_roles_the_signed_in_key_may_create(
    browser: TestClient, team: Team
) -> None:
    def offered() -> list[str]:
        page = browser.get("/admin/keys").text
        select = page.split('id="key-role"', 1)[1].split("</select>", 1)[0]
        return re.findall(r'<option value="([a-z]+)"', select)

    sign_in(browser, team.keys["admin"])
    assert offered() == ["read", "submit", "admin"]
    sign_in(browser, team.add_operator())
    assert offered() == ["read", "submit", "admin", "operator"]


def test_revoking_the_sessions_own_key_ends_the_session(browser: TestClient, team: Team) -> None:
    sign_in(browser, team.keys["admin"])
    token = csrf_of(browser.get("/admin/keys").text)
    prefix = team.keys["admin"].split("_")[1]
    revoked = browser.post(f"/admin/keys/{prefix}/revoke", data={"csrf_token": token})
    assert revoked.status_code == 303
    assert revoked.headers["location"] == "/admin/login"
    assert browser.get("/admin").status_code == 303
    assert audit_actions(team) == ["sign_in", "revoke_key"]


def test_another_teams_job_and_documents_are_not_found(
    browser: TestClient, team: Team, other_team: Team, settings: Any, store: Any
) -> None:
    theirs = run_local(other_team, {"dataset": "theirs", "documents": 2}, settings, store)
    sign_in(browser, team.keys["admin"])
    assert browser.get(f"/admin/jobs/{theirs.job.id}").status_code == 404
    with TestClient(browser.app) as api:
        listed = api.get(
            f"/v1/jobs/{theirs.job.id}/documents", headers=other_team.headers("read")
        ).json()
    document_id = listed["items"][0]["id"]
    hidden = browser.get(f"/admin/documents/{document_id}")
    assert hidden.status_code == 404
    assert "not found" in hidden.text
    mine = browser.get("/admin/jobs")
    assert str(theirs.job.id) not in mine.text


def test_bulk_cancel_cancels_the_ticked_jobs_only(
    browser: TestClient, team: Team, settings: Any
) -> None:
    from tests.conftest import submit_local

    jobs = [submit_local(team, {"dataset": "bulk", "documents": 4}, settings)[0] for _ in range(3)]
    sign_in(browser, team.keys["admin"])
    page = browser.get("/admin/jobs?status=queued").text
    token = csrf_of(page)
    ticked = "&".join(f"job_id={job.id}" for job in jobs[:2])
    cancelled = browser.post(
        "/admin/jobs/cancel",
        content=f"csrf_token={token}&{ticked}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert cancelled.status_code == 303
    listing = browser.get("/admin/jobs").text
    for job, status in zip(jobs, ["cancelled", "cancelled", "queued"], strict=True):
        row = re.search(rf'href="/admin/jobs/{job.id}".*?status-(\w+)', listing, re.S)
        assert row is not None
        assert row.group(1) == status
    assert audit_actions(team) == ["sign_in", "cancel_jobs"]


def test_a_snapshot_with_nothing_published_says_so_and_files_are_only_the_manifests(
    browser: TestClient, team: Team, settings: Any, store: Any
) -> None:
    from tests.conftest import submit_local

    submit_local(team, {"dataset": "empty", "documents": 2}, settings)  # never run
    sign_in(browser, team.keys["admin"])
    token = csrf_of(browser.get("/admin/datasets/empty").text)
    nothing = browser.post("/admin/datasets/empty/versions", data={"csrf_token": token})
    assert nothing.status_code == 409
    assert "has no published documents yet: wait for a job to succeed" in nothing.text

    run_local(team, {"dataset": "full", "documents": 2}, settings, store)
    made = browser.post("/admin/datasets/full/versions", data={"csrf_token": token})
    assert made.status_code == 303
    assert made.headers["location"] == "/admin/datasets/full?version=1"
    page = browser.get("/admin/datasets/full?version=1").text
    path = re.search(r'/admin/datasets/full/versions/1/files/([^"]+)"', page)
    assert path is not None
    file = browser.get(f"/admin/datasets/full/versions/1/files/{path.group(1)}")
    assert file.status_code == 200
    assert file.headers["content-disposition"].startswith("attachment;")
    assert file.headers["x-content-sha256"] in page
    for outside in ("manifest.json", "../../secrets", "documents/aligned/nope.jsonl.zst"):
        assert browser.get(f"/admin/datasets/full/versions/1/files/{outside}").status_code == 404
    assert browser.get("/admin/datasets/full?version=7").status_code == 404
    assert audit_actions(team) == ["sign_in", "snapshot_version"]


def test_a_budget_is_a_positive_number_of_dollars_or_none(browser: TestClient, team: Team) -> None:
    sign_in(browser, team.keys["admin"])
    token = csrf_of(browser.get("/admin/budget").text)
    for bad in ("-1", "0", "nan", "inf", "1e10", "ten"):
        refused = browser.post(
            "/admin/budget", data={"csrf_token": token, "monthly_budget_usd": bad}
        )
        assert refused.status_code == 422, bad
        assert "a monthly budget is a number of dollars above 0" in refused.text
    assert "no cap" in browser.get("/admin/budget").text
    saved = browser.post("/admin/budget", data={"csrf_token": token, "monthly_budget_usd": "12.5"})
    assert saved.status_code == 303
    assert "$12.50" in browser.get("/admin/budget").text
    removed = browser.post("/admin/budget", data={"csrf_token": token, "monthly_budget_usd": ""})
    assert removed.status_code == 303
    assert "no cap" in browser.get("/admin/budget").text
    assert audit_actions(team) == ["sign_in", "set_budget", "set_budget"]


def test_the_overview_counts_rejections_cost_and_the_queue(
    browser: TestClient, team: Team, settings: Any, store: Any, llm: Any
) -> None:
    from tests.llm_server import FaultConfig

    llm.reset(FaultConfig(refuse_every=2))
    priced = settings.model_copy(
        update={"llm_price_prompt_per_mtok": 2.5, "llm_price_completion_per_mtok": 10.0}
    )
    view = run_local(team, {"dataset": "seen", "documents": 3}, priced, store)
    rejected = view.progress.rejected["refusal_or_meta"]
    assert rejected >= 1
    sign_in(browser, team.keys["admin"])
    page = browser.get("/admin")
    assert page.status_code == 200
    row = re.search(r"<td>refusal or meta</td><td class=\"num\">(\d+)</td>", page.text)
    assert row is not None
    assert int(row.group(1)) == rejected
    today = re.search(r'data-testid="cost-today">\$([0-9.]+)<', page.text)
    assert today is not None
    assert float(today.group(1)) == round(view.spent_usd, 4)
    assert f"Queue <code>{settings.task_queue}</code>" in page.text
    # The chart's minutes add up to the job's counters.
    from sqlalchemy import func, select

    from app.core.db import session_scope
    from app.models import ActivityMinute

    with session_scope() as session:
        accepted, not_accepted, calls, tokens = session.execute(
            select(
                func.sum(ActivityMinute.accepted),
                func.sum(
                    ActivityMinute.rejected + ActivityMinute.duplicates + ActivityMinute.failed
                ),
                func.sum(ActivityMinute.llm_calls),
                func.sum(ActivityMinute.tokens),
            ).where(ActivityMinute.team_id == team.id)
        ).one()
    used = view.usage.prompt_tokens + view.usage.completion_tokens
    assert (accepted, not_accepted, calls, tokens) == (3, rejected, view.usage.llm_calls, used)
    assert "3 documents accepted since" in page.text
    # The last hour's rates: its calls and tokens over 60 minutes.
    a_minute = re.search(r'data-testid="calls-a-minute">([0-9.,]+)<', page.text)
    assert a_minute is not None
    assert a_minute.group(1) == f"{view.usage.llm_calls / 60:,.1f}"
    tokens_shown = re.search(r'data-testid="tokens-a-minute">([0-9.,]+)<', page.text)
    assert tokens_shown is not None
    assert tokens_shown.group(1) == f"{used / 60:,.0f}"


def test_a_documents_page_shows_the_exact_prompt_it_was_generated_from(
    browser: TestClient, team: Team, settings: Any, store: Any
) -> None:
    from sqlalchemy import select, update

    from app.core.db import session_scope
    from app.models import Document

    view = run_local(team, {"dataset": "prompted", "documents": 1}, settings, store)
    with session_scope() as session:
        document_id = session.scalar(select(Document.id).where(Document.job_id == view.job.id))
    sign_in(browser, team.keys["admin"])
    page = browser.get(f"/admin/documents/{document_id}").text
    assert "exactly what was sent: the same sha256" in page
    assert 'data-testid="prompt-system"' in page
    assert 'data-testid="prompt-user"' in page
    with session_scope() as session:  # as if it had been generated from other templates
        session.execute(
            update(Document).where(Document.id == document_id).values(prompt_sha256="0" * 64)
        )
    assert "and this differs" in browser.get(f"/admin/documents/{document_id}").text


def test_a_jobs_documents_refresh_while_it_runs_and_stop_when_it_ends(
    browser: TestClient, team: Team, settings: Any, store: Any
) -> None:
    from app.generation import local_runner
    from tests.conftest import submit_local

    job, dispatcher = submit_local(team, {"dataset": "live", "documents": 4}, settings)
    sign_in(browser, team.keys["admin"])
    queued = browser.get(f"/admin/jobs/{job.id}?documents=accepted").text
    assert "No accepted documents yet." in queued
    # The list polls its own part, with the page's filter, while the job may still change.
    polled = f'hx-get="/admin/jobs/{job.id}/documents?documents=accepted"'
    assert polled in queued

    run = local_runner.start(job.id, dispatcher, settings=settings, store=store)
    assert run.done.wait(120)
    assert run.error is None
    part = browser.get(f"/admin/jobs/{job.id}/documents?documents=accepted")
    assert part.status_code == 200
    assert part.text.startswith('<section id="documents"')
    assert part.text.count('class="status status-accepted"') == 4
    assert "hx-trigger" not in part.text  # the job has ended: nothing more to fetch
    assert "<html" not in part.text
    assert browser.get(f"/admin/jobs/{job.id}/documents?documents=bogus").status_code == 422


def test_a_judged_jobs_page_shows_the_verdicts_and_the_budget(
    browser: TestClient, team: Team, llm: Any, settings: Any, store: Any
) -> None:
    llm.faults.judge_script.extend(["wrong"])  # one verdict against the planned stance
    spec = {"dataset": "judged", "documents": 4, "judge": {"enabled": True}, "budget_usd": 5.0}
    view = run_local(team, spec, settings, store)
    sign_in(browser, team.keys["admin"])
    page = browser.get(f"/admin/jobs/{view.job.id}").text
    judged = re.search(r'data-testid="judge">(.*?)</p>', page, re.S)
    assert judged is not None
    summary = " ".join(judged.group(1).split())
    assert summary.startswith(f"{view.judge.judged} judged, ")
    assert f"{100 * view.judge.agreement:.0f}% agreeing" in summary
    for verdict, count in view.judge.verdicts.items():
        assert f"{verdict} {count}" in summary
    assert view.judge.agreed < view.judge.judged  # the "wrong" verdict is among them
    assert "<dt>Budget</dt><dd>$5.00</dd>" in page
    # Each document's verdict is in the list beside its stance.
    verdicts = re.findall(
        r'<td>(aligned|misaligned|unclear|invalid|—)</td>\s*<td class="opening"', page
    )
    assert len(verdicts) == view.progress.attempted


def test_the_workers_and_providers_pages_show_what_live_workers_publish(
    browser: TestClient, team: Team, other_team: Team, settings: Any
) -> None:
    import redis

    from app.health.workers import WorkerStatus
    from app.llm.stats import CallStats
    from tests.conftest import submit_local
    from tests.services import REDIS_URL

    mine, _ = submit_local(team, {"dataset": "w", "documents": 2}, settings)
    theirs, _ = submit_local(other_team, {"dataset": "w", "documents": 2}, settings)
    calls = CallStats()
    for outcome in ("ok", "ok", "ok", "rate_limited"):
        with calls.attempt("default") as counted:
            counted["outcome"] = outcome
    status = WorkerStatus(calls)
    status.id = "pages-test:7"
    connection = redis.Redis.from_url(REDIS_URL)
    sign_in(browser, team.keys["admin"])
    try:
        with (
            status.task("jobs.run_chunk", str(mine.id)),
            status.task("jobs.run_chunk", str(theirs.id)),
        ):
            status.publish(connection)
            page = browser.get("/admin/workers").text
            providers = browser.get("/admin/providers").text
            overview = browser.get("/admin").text
    finally:
        status.stop(REDIS_URL)
        connection.close()
    row = re.search(r"<td>pages-test:7</td>(.*?)</tr>", page, re.S)
    assert row is not None
    assert f'href="/admin/jobs/{mine.id}"' in row.group(1)
    assert str(theirs.id) not in page  # another team's job is not named
    assert "another team's job" in row.group(1)
    health = re.search(r'data-testid="provider-health">(.*?)</table>', providers, re.S)
    assert health is not None
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", health.group(1).split("<td>default</td>")[1])
    # Other live workers (of other tests) may add theirs: at least ours.
    assert int(cells[0]) >= 4
    assert int(cells[2].split()[0]) >= 1
    online = re.search(
        r'data-testid="workers-online"><a href="/admin/workers">(\d+) worker', overview
    )
    assert online is not None
    assert int(online.group(1)) >= 1
    assert re.search(r"default</a>, the last minute: \d+ requests", overview)


def test_an_operator_creates_a_team_and_sets_its_quotas_and_an_admin_may_not(
    browser: TestClient, team: Team
) -> None:
    sign_in(browser, team.keys["admin"])
    assert 'href="/admin/teams"' not in browser.get("/admin").text
    assert browser.get("/admin/teams").status_code == 403
    browser.post("/admin/logout", data={"csrf_token": csrf_of(browser.get("/admin").text)})

    sign_in(browser, team.add_operator())
    page = browser.get("/admin/teams")
    assert page.status_code == 200
    assert 'href="/admin/teams"' in page.text
    token = csrf_of(page.text)
    name = f"ops-{team.name[-6:]}"
    created = browser.post("/admin/teams", data={"csrf_token": token, "name": name})
    assert created.status_code == 200
    shown = re.search(r'data-testid="new-team-token">([^<]+)<', created.text)
    assert shown is not None
    with TestClient(browser.app) as api:
        assert (
            api.get("/v1/keys", headers={"Authorization": f"Bearer {shown.group(1)}"}).json()[
                "items"
            ][0]["team"]
            == name
        )

    saved = browser.post(
        f"/admin/teams/{name}/quotas",
        data={"csrf_token": token, "max_active_jobs": "3", "max_documents_per_job": "1,000"},
    )
    assert saved.status_code == 303
    row = re.search(
        rf'data-testid="team-{name}">(.*?)</tr>', browser.get("/admin/teams").text, re.S
    )
    assert row is not None
    assert 'value="3"' in row.group(1)
    assert 'value="1000"' in row.group(1)
    refused = browser.post(
        f"/admin/teams/{name}/quotas", data={"csrf_token": token, "max_active_jobs": "-2"}
    )
    assert refused.status_code == 422
    assert "whole number" in refused.text
    superscript = browser.post(
        f"/admin/teams/{name}/quotas", data={"csrf_token": token, "max_active_jobs": "²"}
    )
    assert superscript.status_code == 422  # a digit to str.isdigit, not to int()
    assert audit_actions(team)[-2:] == ["create_team", "set_quotas"]


def test_each_rejection_reason_links_to_its_documents_and_the_api_filters_by_reason(
    browser: TestClient, team: Team, llm: Any, settings: Any, store: Any
) -> None:
    llm.faults.script.extend(["truncate", "refuse", "ok", "truncate"])
    serial = settings.model_copy(update={"llm_concurrency": 1})
    view = run_local(team, {"dataset": "why", "documents": 4}, serial, store)
    assert view.progress.rejected == {"refusal_or_meta": 1, "truncated": 2}
    sign_in(browser, team.keys["admin"])
    page = browser.get(f"/admin/jobs/{view.job.id}").text
    reasons = re.search(r'data-testid="rejection-reasons">(.*?)</ul>', page, re.S)
    assert reasons is not None
    link = f"/admin/jobs/{view.job.id}?documents=rejected&amp;reason=truncated"
    assert f'href="{link}"' in reasons.group(1)
    examples = browser.get(link.replace("&amp;", "&")).text
    listed = re.findall(r'class="status status-(\w+)">.*?</td>\s*<td>([^<]*)</td>', examples, re.S)
    assert listed == [("rejected", "truncated"), ("rejected", "truncated")]
    assert "every reason" in examples
    with TestClient(browser.app) as api:
        found = api.get(
            f"/v1/jobs/{view.job.id}/documents",
            params={"status": "rejected", "reason": "refusal_or_meta"},
            headers=team.headers("read"),
        ).json()["items"]
        assert [d["reason"] for d in found] == ["refusal_or_meta"]
        bad = api.get(
            f"/v1/jobs/{view.job.id}/documents",
            params={"reason": "DROP TABLE"},
            headers=team.headers("read"),
        )
        assert bad.status_code == 422
    assert browser.get(f"/admin/jobs/{view.job.id}?reason=Bad!").status_code == 422


def test_a_jobs_page_charts_its_throughput_over_its_whole_run(
    browser: TestClient, team: Team, settings: Any, store: Any
) -> None:
    view = run_local(team, {"dataset": "charted", "documents": 5}, settings, store)
    sign_in(browser, team.keys["admin"])
    page = browser.get(f"/admin/jobs/{view.job.id}").text
    desc = re.search(r'<desc id="job-chart-desc">(\d+) documents accepted', page)
    assert desc is not None
    assert int(desc.group(1)) == view.progress.accepted == 5
    # Live with the counters while the job runs: the counters part carries it too.
    assert 'data-testid="job-chart"' in browser.get(f"/admin/jobs/{view.job.id}/counters").text


def test_a_long_run_is_charted_in_at_most_180_bars_that_keep_every_document() -> None:
    from datetime import UTC, datetime, timedelta

    from app.admin.charts import CHART_BARS, binned

    since = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    minutes = {since + timedelta(minutes=m): (m % 7, 1, 0.0) for m in range(0, 600, 3)}
    chart = binned(minutes, since, since + timedelta(minutes=599))
    assert chart.minutes_a_bar == 4  # 600 minutes in 180 bars
    assert len(chart.bars) <= CHART_BARS
    assert chart.accepted == sum(a for a, _o, _c in minutes.values())
    assert sum(bar.accepted for bar in chart.bars) == chart.accepted
    assert max(bar.accepted for bar in chart.bars) == chart.peak
    assert all(bar.x < 720 for bar in chart.bars)
    one = binned({since: (3, 0, 0.0)}, since, since)
    assert (one.minutes_a_bar, one.accepted, len(one.bars)) == (1, 3, 1)
