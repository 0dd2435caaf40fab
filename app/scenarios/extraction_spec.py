"""The request for a scenario-extraction job, and how its output is read. Pure."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any

from pydantic import Field, StrictInt, StringConstraints, ValidationError

from app.core.text import NOT_BLANK
from app.jobs.spec import Identifier, Sampling, Strict
from app.scenarios.bank import Scenario, Split, Topic

MAX_SOURCE_CHARS = 60_000


class SourceDocument(Strict):
    title: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NOT_BLANK)]
    text: Annotated[str, StringConstraints(min_length=200, max_length=MAX_SOURCE_CHARS)]
    url: Annotated[str, StringConstraints(max_length=500)] | None = None

    @property
    def citation(self) -> str:
        title = self.title.strip()
        return f"{title} <{self.url}>" if self.url else title


class ExtractionSpec(Strict):
    """Turn source documents the team uploads into new scenarios with an LLM."""

    sources: list[SourceDocument] = Field(min_length=1, max_length=500)
    per_source: StrictInt = Field(
        default=3, ge=1, le=10, description="Scenarios to ask for per source."
    )
    split: Split = Split.TRAIN
    provider: Identifier = "default"
    model: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    sampling: Sampling = Field(default_factory=lambda: Sampling(temperature=0.7))
    name: Annotated[str, StringConstraints(max_length=200)] | None = None

    def request_sha256(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def _json_payload(text: str) -> Any:
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1)
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise ValueError("no JSON object in the output")
    payload, _end = json.JSONDecoder().raw_decode(text[start:])
    return payload


def read_candidates(
    output: str, *, id_prefix: str, source: str, split: Split
) -> tuple[list[Scenario], list[str]]:
    """Valid scenarios from a model's output, and a reason for each candidate that was not."""
    try:
        payload = _json_payload(output)
    except ValueError as exc:
        return [], [f"unreadable output: {exc}"]
    candidates = payload.get("scenarios") if isinstance(payload, dict) else payload
    if not isinstance(candidates, list):
        return [], ["the output has no 'scenarios' list"]
    valid: list[Scenario] = []
    errors: list[str] = []
    for number, candidate in enumerate(candidates):
        if not isinstance(candidate, dict):
            errors.append(f"candidate {number}: not an object")
            continue
        topics = [t for t in candidate.get("topics", []) if t in Topic.__members__.values()]
        fields = {
            key: value.strip() if isinstance(value := candidate.get(key), str) else value
            for key in ("situation", "aligned_action", "misaligned_action")
        }
        try:
            valid.append(
                Scenario.model_validate(
                    fields
                    | {
                        "id": f"{id_prefix}-{number}",
                        "topics": topics[:3],
                        "source": source[:500],
                        "split": split,
                    }
                )
            )
        except ValidationError as exc:
            problems = ", ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            errors.append(f"candidate {number}: {problems}")
    return valid, errors
