"""How fast the admin dashboard's pages answer on a large deployment.

Seeds (once, kept for later runs) a database with ``bench/seed.py``'s shape: 2 million work
items by default, about 1.9 million documents, and 10,000 jobs (one giant running job with
80% of the items, four big ones, and the rest small). Then starts ``priorforge serve`` (one
API process, service mode), signs in with a new admin key of the seeded team, and requests
every page in turn: two warm-up requests, then ``--requests`` timed ones, one at a time over
one keep-alive connection. Prints p50, p90 and the slowest per page, against the 300 ms
budget, and the server's CPU time per request.

    python bench/admin.py [--work-items 2000000] [--small-jobs 9995] [--requests 20] [--fresh]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import create_engine, select, update  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from app.admin import session as sessions  # noqa: E402
from app.models import ApiKey, Document, Job  # noqa: E402
from app.models.base import utcnow  # noqa: E402
from app.teams.keys import Role  # noqa: E402
from bench import load, seed  # noqa: E402

BUDGET_MS = 300.0


class Dashboard:
    """A signed-in admin over plain HTTP: the session cookie is Secure, which a client only
    sends over HTTPS, so it is carried by hand, as the browser would over TLS."""

    def __init__(self, base_url: str, token: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=60, follow_redirects=False)
        self.cookies: dict[str, str] = {}
        form = self.get("/admin/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf is not None
        signed = self.post("/admin/login", {"csrf_token": csrf.group(1), "api_key": token})
        if signed.status_code != 303:
            raise SystemExit(f"signing in failed: {signed.status_code}")

    def _keep(self, response: httpx.Response) -> httpx.Response:
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return response

    def _headers(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items() if v)}

    def get(self, path: str) -> httpx.Response:
        return self._keep(self.client.get(path, headers=self._headers()))

    def post(self, path: str, form: dict[str, str]) -> httpx.Response:
        return self._keep(self.client.post(path, data=form, headers=self._headers()))


def pages(url: str, dashboard: Dashboard) -> list[tuple[str, str]]:
    """(what, path) for every page, with ids read from the seeded database."""
    engine = create_engine(url)
    with Session(engine) as session:
        giant = session.scalar(select(Job.id).order_by(Job.requested.desc()).limit(1))
        small = session.scalar(
            select(Job.id).where(Job.status == "succeeded").order_by(Job.created_at.desc())
        )
        document = session.scalar(
            select(Document.id).where(Document.job_id == giant, Document.status == "rejected")
        )
    engine.dispose()
    listing = dashboard.get("/admin/jobs").text
    older = re.search(r'href="(/admin/jobs\?cursor=[^"]+)"', listing)
    assert older is not None, "the job list has one page only"
    return [
        ("overview", "/admin"),
        ("jobs, first page", "/admin/jobs"),
        ("jobs, second page", older.group(1).replace("&amp;", "&")),
        ("jobs, succeeded", "/admin/jobs?status=succeeded"),
        ("jobs, by dataset", f"/admin/jobs?dataset={seed.DATASET}"),
        ("giant job (2M items)", f"/admin/jobs/{giant}"),
        ("giant job, rejected", f"/admin/jobs/{giant}?documents=rejected"),
        ("giant job, counters", f"/admin/jobs/{giant}/counters"),
        ("giant job, documents part", f"/admin/jobs/{giant}/documents"),
        ("giant job, contaminated", f"/admin/jobs/{giant}?documents=rejected&reason=contaminated"),
        ("giant job, too long", f"/admin/jobs/{giant}?documents=rejected&reason=too_long"),
        ("small job", f"/admin/jobs/{small}"),
        ("document", f"/admin/documents/{document}"),
        ("datasets", "/admin/datasets"),
        ("corpus", f"/admin/corpus?dataset={seed.DATASET}"),
        (
            "corpus, most first, page 3",
            f"/admin/corpus?dataset={seed.DATASET}&order=most&offset=100",
        ),
        ("dataset", f"/admin/datasets/{seed.DATASET}"),
        ("budget", "/admin/budget"),
        ("scenarios", "/admin/scenarios"),
        ("scenarios, held-out sandbagging", "/admin/scenarios?split=heldout&topic=sandbagging"),
        ("surface forms", "/admin/forms"),
        ("providers", "/admin/providers"),
        ("workers", "/admin/workers"),
        ("keys", "/admin/keys"),
        ("audit log", "/admin/audit"),
        ("/metrics", "/metrics"),
    ]


def measure(dashboard: Dashboard, path: str, requests: int) -> list[float]:
    for _ in range(2):
        warm = dashboard.get(path)
        if warm.status_code != 200:
            raise SystemExit(f"{path} answered {warm.status_code}: {warm.text[:300]}")
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        response = dashboard.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return sorted(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-items", type=int, default=2_000_000)
    parser.add_argument("--small-jobs", type=int, default=9_995)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--fresh", action="store_true", help="drop the database and seed anew")
    args = parser.parse_args()
    try:
        jobs = seed.plan_jobs(args.work_items, args.small_jobs)
    except ValueError as exc:
        parser.error(str(exc))
    name = f"priorforge_admin_{args.work_items}_{args.small_jobs}"
    url = seed.ensure_database(name, fresh=args.fresh)
    seeded = seed.seed(url, args.work_items, small_jobs=args.small_jobs)
    seed.report(seeded)
    token = seed.issue_keys(url, (Role.ADMIN,))["admin"]
    engine = create_engine(url, pool_size=1, max_overflow=0)
    load.forget_store(engine)  # each run has a store of its own, as bench/load.py's
    engine.dispose()
    run = secrets.token_hex(4)
    run_dir = Path(tempfile.mkdtemp(prefix=f"priorforge-admin-{run}-"))
    server = load.Server(url, 1, run_dir, f"priorforge-admin-{run}")
    try:
        asyncio.run(server.wait_ready())
        dashboard = Dashboard(f"http://{load.HOST}:{server.port}", token)
        assert sessions.COOKIE in dashboard.cookies
        print(f"{len(jobs):,} jobs; one API process; {args.requests} requests a page\n")
        print(f"{'page':<24} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8}  CPU ms/request")
        slowest = 0.0
        for what, path in pages(url, dashboard):
            cpu_before = load.tree_cpu_seconds(server.process.pid)
            times = measure(dashboard, path, args.requests)
            cpu = (load.tree_cpu_seconds(server.process.pid) - cpu_before) * 1000
            cpu /= args.requests + 2
            p90 = times[max(0, int(len(times) * 0.9) - 1)]
            slowest = max(slowest, times[-1])
            print(
                f"{what:<24} {statistics.median(times):8.1f} {p90:8.1f} {times[-1]:8.1f}"
                f"  {cpu:8.1f}"
            )
        verdict = "under" if slowest < BUDGET_MS else "NOT under"
        print(f"\nthe slowest request of all: {slowest:.1f} ms, {verdict} {BUDGET_MS:.0f} ms")
    finally:
        server.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
        engine = create_engine(url)
        with Session(engine) as session, session.begin():  # the bench's key stops working
            session.execute(
                update(ApiKey).where(ApiKey.name == "bench admin").values(revoked_at=utcnow())
            )
        engine.dispose()
        load.drop_queue(f"priorforge-admin-{run}")


if __name__ == "__main__":
    main()
