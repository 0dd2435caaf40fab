"""The API against its own OpenAPI document: schemathesis, every check, on a live server.

A real ``priorforge serve`` on this run's PostgreSQL and Redis is tested with ``st run``:
all checks (no 5xx, documented statuses, content types and headers, response bodies that
match their schemas, valid data accepted and invalid data rejected, 405s with Allow, auth
that is never ignored, resources that exist after they are created and vanish after they are
deleted), every phase (coverage, fuzzing and the stateful phase, whose links are inferred from
the document), 200 examples per operation, with a fixed seed so a failure is reproducible.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import TMP, LiveServer, Team

HERE = Path(__file__).resolve().parent
SEED = os.environ.get("PRIORFORGE_CONTRACT_SEED", "20261125")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_api_keeps_its_openapi_contract(
    live_server: Callable[..., LiveServer], team: Team
) -> None:
    # Jobs schemathesis submits are only queued (no worker runs), each planning a small window.
    server = live_server("--workers", "2", PRIORFORGE_PLAN_AHEAD_ITEMS="64")
    report = TMP / "schemathesis"
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"{server.base_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {team.keys['admin']}",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        "200",
        "--seed",
        SEED,
        "--report",
        "junit",
        "--report-dir",
        str(report),
        "--no-color",
    ]
    env = dict(os.environ) | {
        "SCHEMATHESIS_HOOKS": "tests.contract.hooks",
        "PYTHONPATH": str(HERE.parent.parent),
    }
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=840, check=False
    )
    output = result.stdout + result.stderr
    summary = output[output.rfind("SUMMARY") - 40 :] if "SUMMARY" in output else output[-4000:]
    assert result.returncode == 0, f"{output[-20000:]}\n\nserver log: {server.log}"
    assert "Tested: " in summary, summary
