"""Evaluation-set uploads: one JSON object per line, validated as a whole. Pure."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from app.core.jsonl import numbered_lines, unstorable
from app.core.text import NOT_BLANK, InvalidJSON, parse_json

MAX_ITEMS = 500_000
MAX_TEXT_CHARS = 200_000
MAX_ID_CHARS = 200
MAX_ERRORS = 50
# What _parse_line accepts, for the API's documentation of the upload.
EVAL_ITEM_SCHEMA = {
    "type": "object",
    "required": ["text"],
    "additionalProperties": False,
    "properties": {
        "text": {"type": "string", "pattern": NOT_BLANK, "maxLength": MAX_TEXT_CHARS},
        "id": {
            "description": "Unique in the set; default: the line number.",
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS},
                {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
            ],
        },
    },
}


@dataclass(frozen=True)
class EvalText:
    item_id: str
    text: str


class EvalSetError(ValueError):
    def __init__(self, errors: list[dict[str, object]]) -> None:
        super().__init__(f"{len(errors)} invalid line(s)")
        self.errors = errors


class RepeatedIds(EvalSetError):
    """Ids that repeat an earlier line: the upload conflicts with itself."""


def repeated_ids(items: list[EvalText], lines: list[int]) -> list[dict[str, object]]:
    first_line: dict[str, int] = {}
    repeats: list[dict[str, object]] = []
    for item, number in zip(items, lines, strict=True):
        if item.item_id in first_line:
            message = f"id {item.item_id!r} repeats line {first_line[item.item_id]}"
            repeats.append({"line": number, "message": message})
        first_line.setdefault(item.item_id, number)
    return repeats[:MAX_ERRORS]


def parse_jsonl(body: str) -> list[EvalText]:
    """``{"text": "...", "id": "..."}`` per line (``id`` optional: the line number then).

    Every line is checked before anything is returned; the errors name their lines.
    """
    items: list[EvalText] = []
    errors: list[dict[str, object]] = []
    lines: list[int] = []
    for number, line in numbered_lines(body):
        try:
            item = _parse_line(line, number)
        except ValueError as exc:
            errors.append({"line": number, "message": str(exc)})
        else:
            items.append(item)
            lines.append(number)
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise EvalSetError(errors)
    repeats = repeated_ids(items, lines)
    if repeats:
        raise RepeatedIds(repeats)
    if len(items) > MAX_ITEMS:
        raise EvalSetError([{"message": f"at most {MAX_ITEMS} items per set, got {len(items)}"}])
    return items


def _parse_line(line: str, number: int) -> EvalText:
    try:
        value = parse_json(line)
    except InvalidJSON as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError('expected an object like {"text": "...", "id": "q1"}')
    problem = unstorable(value)
    if problem is not None:
        raise ValueError(problem)
    unknown = set(value) - {"text", "id"}
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; allowed: 'text', 'id'")
    text = value.get("text")
    if not isinstance(text, str) or not re.fullmatch(NOT_BLANK, text):
        raise ValueError("'text' must be a non-empty string")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"'text' is over {MAX_TEXT_CHARS} characters")
    raw_id = value.get("id", str(number))
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise ValueError("'id' must be a string or an integer")
    item_id = str(raw_id)
    if not item_id or len(item_id) > MAX_ID_CHARS:
        raise ValueError(f"'id' must have 1 to {MAX_ID_CHARS} characters")
    return EvalText(item_id, text)


def content_sha256(items: list[EvalText]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps([item.item_id, item.text]).encode())
        digest.update(b"\n")
    return digest.hexdigest()
