"""Dashboard sign-in, sessions, CSRF and headers, through HTTP (the browser suite drives the
same pages in Chromium)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.admin import session as sessions
from app.core.db import session_scope
from app.main import create_app
from app.models import AdminAudit
from tests.admin.conftest import BASE
from tests.conftest import Team, submit_local


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def sign_in(browser: TestClient, token: str, next: str = "/admin") -> Any:
    form = browser.get("/admin/login")
    assert form.status_code == 200
    return browser.post(
        "/admin/login",
        data={"csrf_token": csrf_of(form.text), "api_key": token, "next": next},
    )


def audit_actions(team: Team) -> list[str]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(AdminAudit.action)
                .where(AdminAudit.team_id == team.id)
                .order_by(AdminAudit.at)
            )
        )


def test_an_admin_key_signs_in_to_a_secure_session_and_lands_where_it_was_going(
    browser: TestClient, team: Team
) -> None:
    assert browser.get("/admin/jobs?status=running").headers["location"] == (
        "/admin/login?next=%2Fadmin%2Fjobs%3Fstatus%3Drunning"
    )
    signed = sign_in(browser, team.keys["admin"], next="/admin/jobs?status=running")
    assert signed.status_code == 303
    assert signed.headers["location"] == "/admin/jobs?status=running"
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith(f"{sessions.COOKIE}=")
    for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Path=/admin"):
        assert attribute.lower() in cookie.lower()
    page = browser.get("/admin/jobs?status=running")
    assert page.status_code == 200
    assert "Cancel selected jobs" in page.text
    assert audit_actions(team) == ["sign_in"]


@pytest.mark.parametrize("role", ["read", "submit"])
def test_a_key_that_is_not_an_admins_cannot_sign_in(
    browser: TestClient, team: Team, role: str
) -> None:
    refused = sign_in(browser, team.keys[role])
    assert refused.status_code == 200  # the form again, saying why
    assert "the dashboard needs an admin key" in refused.text
    assert sessions.COOKIE not in refused.cookies
    assert browser.get("/admin").status_code == 303


def test_an_unknown_key_or_another_site_sending_someones_sign_in_is_refused(
    browser: TestClient, team: Team
) -> None:
    unknown = sign_in(browser, "pf_000000000000_" + "x" * 40)
    assert "malformed or unknown API key" in unknown.text
    assert sessions.COOKIE not in unknown.cookies
    forged = browser.post(
        "/admin/login", data={"csrf_token": "guess", "api_key": team.keys["admin"]}
    )
    assert forged.status_code == 403
    assert "CSRF token" in forged.text
    assert audit_actions(team) == []


def test_every_post_needs_the_sessions_csrf_token_in_the_form_or_the_htmx_header(
    browser: TestClient, team: Team, settings: Any
) -> None:
    job, _dispatcher = submit_local(team, {"dataset": "d", "documents": 4}, settings)
    sign_in(browser, team.keys["admin"])
    token = csrf_of(browser.get("/admin/jobs").text)

    refused = browser.post(f"/admin/jobs/{job.id}/cancel")
    assert refused.status_code == 403
    htmx_refused = browser.post(
        f"/admin/jobs/{job.id}/cancel", headers={"HX-Request": "true", "X-CSRF-Token": "stale"}
    )
    assert htmx_refused.status_code == 403
    assert htmx_refused.headers["HX-Retarget"] == "#flash"
    other_site = browser.post(
        f"/admin/jobs/{job.id}/cancel",
        data={"csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert other_site.status_code == 403
    assert browser.get(f"/admin/jobs/{job.id}/counters").text.count("Cancel job") == 1

    cancelled = browser.post(
        f"/admin/jobs/{job.id}/cancel", headers={"HX-Request": "true", "X-CSRF-Token": token}
    )
    assert cancelled.status_code == 200
    assert 'data-testid="job-status">cancelled' in cancelled.text
    assert audit_actions(team) == ["sign_in", "cancel_job"]


def test_a_session_ends_when_idle_and_an_htmx_request_is_sent_to_sign_in(
    browser: TestClient, team: Team, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_in(browser, team.keys["admin"])
    assert browser.get("/admin").status_code == 200
    later = time.time() + settings.admin_idle_minutes * 60 + 5
    monkeypatch.setattr(time, "time", lambda: later)  # the signer's clock too
    page = f"{BASE}/admin/jobs?status=running"
    expired = browser.get(
        "/admin/jobs/0/counters", headers={"HX-Request": "true", "HX-Current-URL": page}
    )
    assert expired.status_code == 401
    assert expired.headers["HX-Redirect"] == "/admin/login?next=%2Fadmin%2Fjobs%3Fstatus%3Drunning"
    assert browser.get("/admin").status_code == 303


def test_a_revoked_key_ends_its_sessions_at_once(browser: TestClient, team: Team) -> None:
    sign_in(browser, team.keys["admin"])
    assert browser.get("/admin").status_code == 200
    prefix = team.keys["admin"].split("_")[1]
    api = TestClient(create_app())
    revoked = api.post(f"/v1/keys/{prefix}/revoke", headers=team.headers("admin"))
    assert revoked.status_code == 200
    assert browser.get("/admin").status_code == 303


def test_every_page_has_a_strict_content_security_policy_and_is_never_cached(
    browser: TestClient, team: Team, settings: Any
) -> None:
    job, _dispatcher = submit_local(team, {"dataset": "d", "documents": 2}, settings)
    pages = [browser.get("/admin/login")]
    sign_in(browser, team.keys["admin"])
    for path in ("/admin", "/admin/jobs", f"/admin/jobs/{job.id}", "/admin/audit"):
        pages.append(browser.get(path))
    for page in pages:
        assert page.status_code == 200, page.url
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert page.headers["cache-control"] == "no-store"
        assert "<script>" not in page.text  # scripts come from files only
        assert " style=" not in page.text
        assert "<style" not in page.text
