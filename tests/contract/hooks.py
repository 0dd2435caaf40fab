"""Schemathesis hooks for the contract test (loaded through SCHEMATHESIS_HOOKS).

- A JSON Lines body is put on the wire as one JSON text per line: the OpenAPI document
  describes such a body as the array of its lines (app/core/body.py ``jsonl_body``).
- Two request rules JSON Schema cannot state are respected by *valid* generated requests
  only; invalid (negative) requests are sent as generated. Both rules have their own tests:
  an Idempotency-Key sent again with another body is a 422 (tests/jobs/test_api.py), and
  ``length_words.min`` above ``max`` is a 422 (same file); so is a key expiry that is not
  in the future or both expiry fields at once (tests/teams/test_api.py); an evaluation must
  ask something, each method once, each imported question under its own id
  (tests/evals/test_api.py); a usage range must not end before it starts
  (tests/billing/test_budgets.py). Without this, two unrelated generated requests that
  happen to draw the same key would be reported as "valid data rejected".
- A tokenizer upload must be a tokenizer.json that HF tokenizers loads, which no JSON Schema
  states: valid generated uploads send a real one (trained here, a small BPE); a JSON object
  that is not a tokenizer is a 422 (tests/datasets/exports/test_service.py).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis
from schemathesis import GenerationMode

from app.jobs.spec import LengthWords

_DEFAULT_LENGTHS = LengthWords()
_TOKENIZER: dict[str, Any] = {}


def _tokenizer() -> dict[str, Any]:
    if not _TOKENIZER:
        import tempfile
        from pathlib import Path

        from tests.datasets.exports.tokenizer_fixture import train_tokenizer

        with tempfile.TemporaryDirectory() as tmp:
            path = train_tokenizer(Path(tmp), vocab_size=300)
            _TOKENIZER.update(json.loads(path.read_text()))
    return _TOKENIZER


@schemathesis.serializer("application/jsonl", "application/x-ndjson")
def json_lines(_context: Any, value: Any) -> bytes:
    lines = value if isinstance(value, list) else [value]
    return "\n".join(json.dumps(line) for line in lines).encode()


@schemathesis.hook
def map_case(_context: Any, case: Any) -> Any:
    if case.meta is not None and case.meta.generation.mode != GenerationMode.POSITIVE:
        return case
    if case.method.upper() == "POST" and case.path == "/v1/tokenizers":
        case.body = _tokenizer()
    for name in list(case.headers or {}):
        if name.lower() == "idempotency-key":
            case.headers[name] = uuid.uuid4().hex  # a fresh key per request
    if isinstance(case.body, dict) and case.body.get("expires_at") is not None:
        # A key's expiry must lie ahead (and within 100 years): rules of time, not of shape.
        tomorrow = datetime.now(UTC) + timedelta(days=1)
        case.body["expires_at"] = tomorrow.isoformat()
        case.body.pop("expires_in_days", None)  # one or the other
    if case.method.upper() == "POST" and case.path == "/v1/evals" and isinstance(case.body, dict):
        _valid_eval(case.body)
    if case.path == "/v1/usage" and case.query and {"since", "until"} <= set(case.query):
        # A range runs forwards (tests/billing/test_budgets.py: backwards is a 422).
        low, high = sorted((str(case.query["since"]), str(case.query["until"])))
        case.query |= {"since": low, "until": high}
    for spec in _job_specs(case.body):
        lengths = spec.get("length_words")
        if isinstance(lengths, dict):
            ends = (
                lengths.get("min", _DEFAULT_LENGTHS.min),
                lengths.get("max", _DEFAULT_LENGTHS.max),
            )
            low, high = sorted(ends)
            spec["length_words"] = lengths | {"min": low, "max": high}
    return case


def _valid_eval(body: dict[str, Any]) -> None:
    """An evaluation asks something (scenarios or questions), each method once, and each
    imported question under its own id (tests/evals/test_api.py has the 422s)."""
    questions = body.get("questions")
    if body.get("scenarios", {}) is None and not questions:
        body.pop("scenarios")
    if isinstance(body.get("methods"), list):
        body["methods"] = list(dict.fromkeys(body["methods"])) or ["cloze"]
    if isinstance(questions, list):
        for index, question in enumerate(questions):
            if isinstance(question, dict) and "id" in question:
                question["id"] = f"q{index}"


def _job_specs(body: Any) -> list[dict[str, Any]]:
    """The job specs in a body: POST /v1/jobs sends one, /v1/prompts/preview nests one."""
    if not isinstance(body, dict):
        return []
    nested = body.get("spec")
    return [body] + ([nested] if isinstance(nested, dict) else [])
