"""Three workers against a provider that fails in every way at once: 429s with a short and
a long Retry-After, bursts of 500s, 10% malformed or cut-short replies, a hung socket. Every
item still ends accepted, rejected or failed with a reason; no retry comes before the
Retry-After it was given; the request rate stays within the configured one."""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import pytest

from tests.conftest import Team, spec, wait_for
from tests.llm.test_limits import max_in_window
from tests.llm_server import FaultConfig, LLMTestServer
from tests.test_workers import job_state

DOCUMENTS = 300
RPM = 3000


def fault_script(calls: int, seed: int = 7) -> deque[str]:
    """The provider's answers to its first ``calls`` requests, in order."""
    rng = random.Random(seed)
    script = []
    for _ in range(calls):
        draw = rng.random()
        script.append("malformed" if draw < 0.05 else "cut" if draw < 0.10 else "ok")
    for start in (60, 220):  # two bursts of eight 500s in a row
        script[start : start + 8] = ["500"] * 8
    script[30] = script[160] = script[300] = "429:1"
    script[120] = "429:30"  # longer than a worker holds an item: they are given back
    script[90] = script[250] = "hang"
    return deque(script)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_item_ends_with_a_reason_and_retries_wait_for_retry_after(
    client: Any, llm: LLMTestServer, team: Team, start_worker: Any
) -> None:
    script = fault_script(400)
    expected = {name: sum(f.startswith(name) for f in script) for name in ("429", "500", "hang")}
    llm.reset(FaultConfig(latency=0.01, hang_seconds=20, script=script))
    for _ in range(3):
        start_worker(
            PRIORFORGE_LLM_RPM=str(RPM),
            PRIORFORGE_LLM_CONCURRENCY="8",
            PRIORFORGE_LLM_TIMEOUT_SECONDS="3",
            PRIORFORGE_LLM_MAX_RETRIES="8",
            PRIORFORGE_LLM_BACKOFF_MAX_SECONDS="2",
        )
    body = spec(documents=DOCUMENTS, max_attempts_factor=1.5)
    job_id = client.post("/v1/jobs", json=body, headers=team.headers()).json()["id"]
    ended = ("succeeded", "stopped_budget", "failed", "cancelled")
    wait_for(lambda: job_state(client, team, job_id)["status"] in ended, timeout=240)
    final = job_state(client, team, job_id)
    assert final["status"] == "succeeded", final
    progress = final["progress"]
    assert progress["accepted"] == DOCUMENTS
    assert progress["in_flight"] == progress["not_run"] == 0

    # Every item has exactly one outcome, and every outcome but acceptance says why.
    documents, cursor = [], None
    while True:
        page = client.get(
            f"/v1/jobs/{job_id}/documents",
            params={"limit": 500} | ({"cursor": cursor} if cursor else {}),
            headers=team.headers("read"),
        ).json()
        documents += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(documents) == progress["planned"] == len({d["item_index"] for d in documents})
    assert {d["status"] for d in documents} <= {"accepted", "rejected", "duplicate", "failed"}
    assert all(d["reason"] for d in documents if d["status"] != "accepted")
    items = client.get(
        f"/v1/jobs/{job_id}/items", params={"limit": 500}, headers=team.headers("read")
    ).json()["items"]
    assert {i["state"] for i in items} <= {"done", "failed"}

    # The faults were all served, and the calls that met them were retried, not lost.
    calls = list(llm.state.calls)
    statuses = [status for _t, _item, status, _after in calls]
    assert statuses.count(429) == expected["429"]
    assert statuses.count(500) == expected["500"]
    usage = final["usage"]
    assert usage["llm_errors"] >= expected["429"] + expected["500"] + expected["hang"]

    # No retry of an item before the Retry-After it was given had passed.
    by_item: dict[str, list[tuple[float, int, float | None]]] = {}
    for arrived, item, status, after in calls:
        by_item.setdefault(item, []).append((arrived, status, after))
    gaps = []
    for attempts in by_item.values():
        for (arrived, status, after), (again, _s, _a) in zip(attempts, attempts[1:], strict=False):
            if status == 429 and after is not None:
                gaps.append((again - arrived, after))
    assert len(gaps) == expected["429"], "every 429'd item was tried again"
    assert all(gap >= after - 0.05 for gap, after in gaps), gaps
    assert max_in_window([arrived for arrived, *_ in calls]) <= RPM
