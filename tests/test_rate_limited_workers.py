"""Three worker processes against a provider that enforces its own requests-per-minute: the
shared limiter keeps all of them, together, within it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Team, spec, wait_for
from tests.llm.test_limits import max_in_window
from tests.llm_server import FaultConfig, LLMTestServer
from tests.test_workers import job_state

RPM = 1200
DOCUMENTS = 1400  # about 70 s at the limit: more than one full minute of traffic


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_three_workers_together_never_exceed_the_providers_rpm(
    client: Any, llm: LLMTestServer, team: Team, start_worker: Any
) -> None:
    llm.reset(FaultConfig(rpm_limit=RPM, latency=0.01, retry_after=1.0))
    for _ in range(3):
        start_worker(PRIORFORGE_LLM_RPM=str(RPM), PRIORFORGE_LLM_CONCURRENCY="8")
    body = spec(documents=DOCUMENTS, max_attempts_factor=1.2)
    job_id = client.post("/v1/jobs", json=body, headers=team.headers()).json()["id"]
    ended = ("succeeded", "failed", "cancelled")
    wait_for(lambda: job_state(client, team, job_id)["status"] in ended, timeout=300)
    final = job_state(client, team, job_id)
    assert final["status"] == "succeeded", final
    assert final["progress"]["accepted"] == DOCUMENTS

    arrivals = list(llm.state.arrivals)
    assert arrivals[-1] - arrivals[0] > 60  # the window check below spans whole minutes
    assert max_in_window(arrivals) <= RPM
    assert llm.state.rate_limited / len(arrivals) < 0.01
