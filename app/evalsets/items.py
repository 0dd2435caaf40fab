"""Evaluation-set uploads: one JSON object per line, validated as a whole. Pure."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from app.core.jsonl import numbered_lines, unstorable

MAX_ITEMS = 500_000
MAX_TEXT_CHARS = 200_000
MAX_ID_CHARS = 200
MAX_ERRORS = 50


@dataclass(frozen=True)
class EvalText:
    item_id: str
    text: str


class EvalSetError(ValueError):
    def __init__(self, errors: list[dict[str, object]]) -> None:
        super().__init__(f"{len(errors)} invalid line(s)")
        self.errors = errors


def parse_jsonl(body: str) -> list[EvalText]:
    """``{"text": "...", "id": "..."}`` per line (``id`` optional: the line number then).

    Every line is checked before anything is returned; the errors name their lines.
    """
    items: list[EvalText] = []
    errors: list[dict[str, object]] = []
    seen: dict[str, int] = {}
    for number, line in numbered_lines(body):
        try:
            item = _parse_line(line, number)
        except ValueError as exc:
            errors.append({"line": number, "message": str(exc)})
        else:
            if item.item_id in seen:
                message = f"id {item.item_id!r} repeats line {seen[item.item_id]}"
                errors.append({"line": number, "message": message})
            seen.setdefault(item.item_id, number)
            items.append(item)
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise EvalSetError(errors)
    if len(items) > MAX_ITEMS:
        raise EvalSetError([{"message": f"at most {MAX_ITEMS} items per set, got {len(items)}"}])
    return items


def _parse_line(line: str, number: int) -> EvalText:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise ValueError('expected an object like {"text": "...", "id": "q1"}')
    problem = unstorable(value)
    if problem is not None:
        raise ValueError(problem)
    unknown = set(value) - {"text", "id"}
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; allowed: 'text', 'id'")
    text = value.get("text")
    if not isinstance(text, str) or not text.strip():
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
