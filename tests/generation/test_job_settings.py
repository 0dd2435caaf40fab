"""Per-job settings reach the pipeline: each spec field below changes what a real job keeps.

Every test runs jobs end to end (``run_local`` against the LLM test server) and reads the
documents' status and reason, so a pipeline that built its gates, copy check, decontamination
index or scenario selection from defaults instead of the job's spec fails here, not only a
unit test of the pure function underneath.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Team, run_local, spec
from tests.generation.test_pipeline import documents


@pytest.mark.usefixtures("llm")  # faults reset: every reply is plain generated text
def test_the_specs_gate_thresholds_decide_what_a_job_rejects(
    team: Team, settings: Any, store: Any
) -> None:
    """The test server's pseudo-English is about half function words: accepted under the
    default ``min_english_ratio`` (25%), rejected as ``not_english`` when the spec asks 90%."""
    default = run_local(team, spec(documents=3), settings, store)
    assert default.job.status == "succeeded", default.job.error
    assert (default.progress.accepted, default.progress.rejected) == (3, {})
    accepted = documents(default.job.id)

    strict = spec(documents=3, max_attempts_factor=1.0, gates={"min_english_ratio": 0.9})
    view = run_local(team, strict, settings, store)
    assert view.job.status == "failed", "no document can pass, so the job runs out of items"
    assert view.progress.accepted == 0
    assert view.progress.rejected == {"not_english": 3}
    rejected = documents(view.job.id)
    # The very texts the default job kept (same seed, same prompts), now rejected.
    assert [d.text for d in rejected] == [d.text for d in accepted]
    assert all("< 90%" in (d.detail or "") for d in rejected)
