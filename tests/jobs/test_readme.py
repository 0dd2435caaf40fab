"""The README's job spec is one the server takes, as written."""

from __future__ import annotations

import json
import re

from app.jobs.spec import JobSpec
from tests.conftest import ROOT


def test_the_readme_job_spec_is_valid_as_written() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### The job spec") :]
    block = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the README's job spec section has no JSON block"
    raw = json.loads(block.group(1))
    spec = JobSpec.model_validate(raw)
    # Every field is spelled out: nothing in the example falls back to a default.
    assert set(raw) == set(JobSpec.model_fields)
    assert spec.documents == 1000
