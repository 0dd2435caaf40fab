"""The dashboard in a real browser: Debian's Chromium driven by Playwright against a live
server and worker on loopback. Auto-waiting assertions only (no fixed sleeps); every page's
console must stay free of errors; a screenshot of every page goes to build/screenshots."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from tests.conftest import ROOT, Team, spec
from tests.llm_server import FaultConfig, LLMTestServer

CHROMIUM = Path("/usr/bin/chromium")
# The default provider priced (as tests/billing does), so that budgets bind; a failed call
# not retried, so that failing items fail fast.
WORLD = {
    "PRIORFORGE_LLM_PRICE_PROMPT_PER_MTOK": "2.5",
    "PRIORFORGE_LLM_PRICE_COMPLETION_PER_MTOK": "10",
    "PRIORFORGE_LLM_MAX_RETRIES": "0",
    "PRIORFORGE_PAUSED_RETRY_SECONDS": "2",  # a paused provider's items come back soon
}
SHOTS = ROOT / "build" / "screenshots"
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield launched
        launched.close()


class Watched:
    """A page whose console errors and uncaught exceptions are collected."""

    def __init__(self, page: Page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} ({message.location.get('url')})")

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


@pytest.fixture
def dashboard(browser: Browser, live_server: Any, start_worker: Any) -> Iterator[Watched]:
    start_worker(**WORLD)
    server = live_server("--workers", "1", **WORLD)
    context = browser.new_context(base_url=server.base_url, viewport={"width": 1280, "height": 800})
    watched = Watched(context.new_page(), server.base_url)
    yield watched
    context.close()
    assert watched.errors == []


def sign_in(page: Page, token: str) -> None:
    page.goto("/admin")
    expect(page).to_have_url(re.compile(r"/admin/login\?next=%2Fadmin$"))
    page.get_by_label("API key").fill(token)
    page.get_by_role("button", name="Sign in").click()


def submit(base_url: str, team: Team, **overrides: Any) -> str:
    response = httpx.post(
        f"{base_url}/v1/jobs", json=spec(**overrides), headers=team.headers("submit"), timeout=30
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_an_admin_signs_in_and_watches_a_job_run_to_completion(
    dashboard: Watched, team: Team, llm: LLMTestServer
) -> None:
    page = dashboard.page
    llm.reset(FaultConfig(latency=0.4, refuse_every=3))  # a refusal now and then: rejected
    job_id = submit(dashboard.base_url, team, dataset="watched", documents=6)
    sign_in(page, team.keys["admin"])
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    dashboard.shot("overview")

    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    dashboard.shot("jobs")
    page.get_by_role("link", name=job_id[:12]).click()
    expect(page.get_by_role("heading", name=f"Job {job_id}")).to_be_visible()
    # The counters refresh themselves while the job runs.
    expect(page.get_by_test_id("job-status")).to_have_text("succeeded", timeout=WAIT_MS)
    expect(page.get_by_test_id("accepted")).to_have_text("6")
    # So does the list of documents, opened before the first was written.
    expect(page.locator("#documents .status-accepted")).to_have_count(6, timeout=WAIT_MS)
    expect(page.locator("#documents")).not_to_contain_text("yet")
    dashboard.shot("job-succeeded")

    page.get_by_role("link", name="rejected", exact=True).click()
    page.get_by_role("row").nth(1).get_by_role("link").click()
    expect(page.get_by_test_id("document-status")).to_have_text("rejected")
    expect(page.get_by_test_id("document-reason")).to_contain_text("refusal or meta")
    dashboard.shot("document-rejected")

    page.get_by_role("link", name="Corpus").click()
    expect(page.get_by_test_id("corpus-accepted")).to_have_text("6")
    dashboard.shot("corpus")
    page.get_by_role("link", name="Datasets").click()
    dashboard.shot("datasets")
    page.get_by_role("link", name="watched").click()
    page.get_by_role("button", name="Snapshot a new version").click()
    expect(page.get_by_role("heading", name="Files of v1")).to_be_visible()
    dashboard.shot("dataset-version")
    first = page.locator("table.files tbody tr").first
    listed_sha = first.locator("code.sha").inner_text()
    with page.expect_download() as downloading:
        first.get_by_role("link").click()
    downloaded = Path(downloading.value.path())
    assert hashlib.sha256(downloaded.read_bytes()).hexdigest() == listed_sha

    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("cell", name="sign in")).to_be_visible()
    expect(page.get_by_role("cell", name="snapshot version")).to_be_visible()
    dashboard.shot("audit")
    page.get_by_role("link", name="Overview").click()
    expect(page.get_by_test_id("activity-chart")).to_contain_text("6 documents accepted")
    dashboard.shot("overview-after-a-job")
    page.get_by_role("link", name="Scenarios").click()
    expect(page.get_by_test_id("scenarios")).to_be_visible()
    dashboard.shot("scenarios")
    page.get_by_role("link", name="Surface forms").click()
    expect(page.get_by_test_id("forms")).to_be_visible()
    dashboard.shot("surface-forms")
    page.get_by_role("link", name="Workers").click()
    expect(page.get_by_test_id("workers")).to_be_visible()  # the test's worker
    dashboard.shot("workers")


def test_an_admin_cancels_a_running_job_and_the_log_says_so(
    dashboard: Watched, team: Team, llm: LLMTestServer
) -> None:
    page = dashboard.page
    llm.reset(FaultConfig(latency=3.0))
    job_id = submit(dashboard.base_url, team, dataset="cancelled", documents=200)
    sign_in(page, team.keys["admin"])
    page.goto(f"/admin/jobs/{job_id}")
    expect(page.get_by_test_id("job-status")).to_have_text(re.compile("queued|running"))
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel job").click()
    expect(page.get_by_test_id("job-status")).to_have_text("cancelled", timeout=WAIT_MS)
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    dashboard.shot("job-cancelled")
    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("cell", name="cancel job")).to_be_visible()


def test_a_non_admin_key_cannot_sign_in_and_a_post_without_the_token_is_refused(
    dashboard: Watched, team: Team
) -> None:
    page = dashboard.page
    sign_in(page, team.keys["read"])
    expect(page.get_by_role("alert")).to_contain_text("the dashboard needs an admin key")
    dashboard.shot("sign-in-refused")

    sign_in(page, team.keys["admin"])
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    job_id = submit(dashboard.base_url, team, dataset="forged", documents=2)
    # The browser's own session cookie, without the page's token: what a forged form sends.
    forged = page.request.post(f"/admin/jobs/{job_id}/cancel", form={"csrf_token": "forged"})
    assert forged.status == 403
    bare = page.request.post(f"/admin/jobs/{job_id}/cancel", headers={"HX-Request": "true"})
    assert bare.status == 403


def test_the_jobs_page_reads_on_a_narrow_screen(dashboard: Watched, team: Team) -> None:
    page = dashboard.page
    submit(dashboard.base_url, team, dataset="narrow", documents=2, name="a-job-on-a-phone")
    sign_in(page, team.keys["admin"])
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/admin/jobs")
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(page.get_by_role("link", name="a-job-on-a-phone")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    dashboard.shot("jobs-narrow")
    # Every page fits the screen: a wide table scrolls inside itself, not the page.
    for path in (
        "/admin",
        "/admin/corpus",
        "/admin/scenarios",
        "/admin/providers",
        "/admin/workers",
    ):
        page.goto(path)
        expect(page.locator("h1")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
        dashboard.shot("narrow-" + (path.removeprefix("/admin").strip("/") or "overview"))


def test_an_admin_creates_a_key_sees_it_once_and_revokes_it(dashboard: Watched, team: Team) -> None:
    page = dashboard.page
    sign_in(page, team.keys["admin"])
    page.get_by_role("link", name="Keys").click()
    page.get_by_label("Name").fill("ci-reader")
    page.get_by_label("Role").select_option("read")
    page.get_by_role("button", name="Create key").click()
    token = page.get_by_test_id("new-token").inner_text()
    assert re.fullmatch(r"pf_[0-9a-f]{12}_\S+", token)
    prefix = token.split("_")[1]
    dashboard.shot("key-created")
    works = httpx.get(
        f"{dashboard.base_url}/v1/jobs",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert works.status_code == 200

    page.goto("/admin/keys")  # the page again: the token is not shown again
    expect(page.get_by_test_id("new-token")).to_have_count(0)
    page.get_by_role("button", name=f"Revoke key {prefix}").click()
    expect(page.get_by_test_id(f"key-{prefix}")).to_contain_text("revoked")
    dashboard.shot("keys")
    refused = httpx.get(
        f"{dashboard.base_url}/v1/jobs",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert refused.status_code == 401
    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("cell", name="create key")).to_be_visible()
    expect(page.get_by_role("cell", name="revoke key")).to_be_visible()


def test_an_admin_sets_the_teams_budget_and_a_job_stops_on_it(
    dashboard: Watched, team: Team, llm: LLMTestServer
) -> None:
    page = dashboard.page
    llm.reset(FaultConfig(latency=0.2))
    sign_in(page, team.keys["admin"])
    page.get_by_role("link", name="Budget", exact=True).click()
    expect(page.get_by_test_id("monthly-budget")).to_have_text("no cap")
    page.get_by_label("Monthly budget (USD)").fill("0.05")
    page.get_by_role("button", name="Save budget").click()
    expect(page.get_by_test_id("monthly-budget")).to_have_text("$0.05")

    job_id = submit(dashboard.base_url, team, dataset="capped", documents=40)
    page.goto(f"/admin/jobs/{job_id}")
    expect(page.get_by_test_id("job-status")).to_have_text("stopped budget", timeout=WAIT_MS)
    expect(page.get_by_text("the team's budget for")).to_be_visible()
    dashboard.shot("job-stopped-on-budget")
    page.get_by_role("link", name="Budget", exact=True).click()
    spent = float(page.get_by_test_id("spent").inner_text().removeprefix("$"))
    assert 0 < spent <= 0.05
    dashboard.shot("budget")
    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("cell", name="set budget")).to_be_visible()


def test_an_admin_retries_a_failed_jobs_failed_items_and_it_succeeds(
    dashboard: Watched, team: Team, llm: LLMTestServer
) -> None:
    page = dashboard.page
    llm.reset(FaultConfig(error_500_every=1))  # the provider is down: every call fails
    job_id = submit(dashboard.base_url, team, dataset="outage", documents=2, max_attempts_factor=1)
    sign_in(page, team.keys["admin"])
    page.goto(f"/admin/jobs/{job_id}")
    expect(page.get_by_test_id("job-status")).to_have_text("failed", timeout=WAIT_MS)
    dashboard.shot("job-failed")
    llm.reset(FaultConfig())  # and back
    page.get_by_role("button", name="Retry 2 failed items").click()
    expect(page.get_by_test_id("job-status")).to_have_text("succeeded", timeout=WAIT_MS)
    expect(page.get_by_test_id("accepted")).to_have_text("2")
    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("cell", name="retry failed items")).to_be_visible()


def test_an_admin_pauses_a_provider_and_the_job_waits_until_it_is_resumed(
    dashboard: Watched, team: Team, llm: LLMTestServer
) -> None:
    page = dashboard.page
    sign_in(page, team.keys["admin"])
    page.get_by_role("link", name="Providers").click()
    page.get_by_role("button", name="Pause default").click()
    expect(page.get_by_test_id("provider-default")).to_contain_text("paused")
    dashboard.shot("providers-paused")
    calls = llm.state.requests
    job_id = submit(dashboard.base_url, team, dataset="paused", documents=3)
    page.goto(f"/admin/jobs/{job_id}")
    expect(page.get_by_test_id("job-status")).to_have_text("running", timeout=WAIT_MS)
    page.goto("/admin/providers")  # a few seconds of the job paused: no call was made
    assert llm.state.requests == calls
    page.get_by_role("button", name="Resume default").click()
    expect(page.get_by_test_id("provider-default")).to_contain_text("running")
    page.goto(f"/admin/jobs/{job_id}")
    expect(page.get_by_test_id("job-status")).to_have_text("succeeded", timeout=WAIT_MS)
    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("cell", name="pause provider")).to_be_visible()
    expect(page.get_by_role("cell", name="resume provider")).to_be_visible()


def test_an_admin_exports_a_version_and_plans_a_mixture_of_it(
    dashboard: Watched, team: Team, tmp_path: Path
) -> None:
    from tests.datasets.exports.tokenizer_fixture import EOS, train_tokenizer

    page = dashboard.page
    job_id = submit(dashboard.base_url, team, dataset="mixed", documents=4)
    uploaded = httpx.post(
        f"{dashboard.base_url}/v1/tokenizers?name=bpe",
        content=train_tokenizer(tmp_path, vocab_size=800).read_bytes(),
        headers=team.headers() | {"content-type": "application/json"},
        timeout=60,
    )
    assert uploaded.status_code == 201, uploaded.text
    sign_in(page, team.keys["admin"])
    page.goto(f"/admin/jobs/{job_id}")
    expect(page.get_by_test_id("job-status")).to_have_text("succeeded", timeout=WAIT_MS)
    page.goto("/admin/datasets/mixed")
    page.get_by_role("button", name="Snapshot a new version").click()
    page.get_by_label("End-of-document token").fill(EOS)
    page.get_by_role("button", name="Export v1").click()
    # The exports refresh themselves while the worker runs it.
    expect(page.get_by_test_id("exports")).to_contain_text("succeeded", timeout=WAIT_MS)
    dashboard.shot("dataset-exported")
    page.get_by_role("link", name="plan a mixture").click()
    page.get_by_label("Run's tokens").fill("2000000")
    page.get_by_label("Sequence length").fill("128")
    page.get_by_label("Export's share (0–1)").fill("0.01")
    page.get_by_label("Corpus name").fill("web")
    page.get_by_label("Corpus tokens").fill("50000000")
    page.get_by_label("Corpus Megatron prefix").fill("/data/web_text_document")
    page.get_by_role("button", name="Plan").click()
    expect(page.get_by_test_id("components")).to_contain_text("web")
    expect(page.get_by_test_id("summary")).to_be_visible()
    dashboard.shot("mixture")


def test_an_operator_creates_a_team_and_sets_its_quotas(dashboard: Watched, team: Team) -> None:
    page = dashboard.page
    sign_in(page, team.add_operator())
    page.get_by_role("link", name="Teams").click()
    name = f"lab-{team.name[-6:]}"
    page.get_by_label("New team").fill(name)
    page.get_by_role("button", name="Create team").click()
    token = page.get_by_test_id("new-team-token").inner_text()
    keys = httpx.get(f"{dashboard.base_url}/v1/keys", headers={"Authorization": f"Bearer {token}"})
    assert [key["team"] for key in keys.json()["items"]] == [name]
    page.get_by_label(f"Jobs at once for {name}").fill("2")
    page.get_by_role("button", name=f"Save the quotas of {name}").click()
    expect(page.get_by_test_id(f"team-{name}")).to_contain_text("0 of 2")
    dashboard.shot("teams")
