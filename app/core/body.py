"""How an endpoint declares its request body: size limit and media types.

The route guard (app/core/routing.py) reads these declarations; they also appear in the
OpenAPI document (``x-max-body-bytes``), so clients can see each endpoint's limit.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from app.core.errors import InvalidRequest

MiB = 1024 * 1024
MAX_BODY_KEY = "x-max-body-bytes"
# JSON request bodies: a job spec with 10,000 scenario ids is about 0.7 MiB.
DEFAULT_MAX_BODY_BYTES = 1 * MiB
JSONL_MEDIA_TYPES = ("application/jsonl", "application/x-ndjson")
JSONL_MAX_BYTES = 64 * MiB


def body_limit(max_bytes: int) -> dict[str, Any]:
    """``openapi_extra`` for a JSON endpoint whose bodies may exceed the default limit."""
    return {MAX_BODY_KEY: max_bytes}


def raw_body_declaration(
    media_types: tuple[str, ...], max_bytes: int, description: str, schema: dict[str, Any]
) -> dict[str, Any]:
    """``openapi_extra`` for an endpoint that reads its body itself (with ``raw_body``)."""
    return {
        MAX_BODY_KEY: max_bytes,
        "requestBody": {
            "required": True,
            "description": description,
            "content": {media_type: {"schema": schema} for media_type in media_types},
        },
    }


def jsonl_body(line: dict[str, Any], *, max_lines: int | None = None) -> dict[str, Any]:
    """A JSON Lines body whose every line matches ``line`` (a JSON Schema).

    OpenAPI 3.1 has no schema for a sequence of JSON texts, so the body is described as the
    array of its lines (OpenAPI 3.2 calls this ``itemSchema``); the description says so.
    """
    lines: dict[str, Any] = {"type": "array", "minItems": 1, "items": line}
    if max_lines is not None:
        lines["maxItems"] = max_lines
    return raw_body_declaration(
        JSONL_MEDIA_TYPES,
        JSONL_MAX_BYTES,
        "JSON Lines, UTF-8, at most 64 MiB (split bigger files): the schema's array items are "
        "the lines, one JSON object per line. All lines are valid or nothing is stored.",
        lines,
    )


def inline_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON Schema with its ``$defs`` substituted, to embed in an OpenAPI body."""
    definitions = schema.get("$defs", {})

    def substitute(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return substitute(definitions[ref.removeprefix("#/$defs/")])
            return {k: substitute(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [substitute(v) for v in node]
        return node

    inlined: dict[str, Any] = substitute(schema)
    return inlined


async def raw_body(request: Request) -> bytes:
    """The body, which the route guard has already read within the endpoint's limit."""
    return await request.body()


def utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"the body is not UTF-8 (byte {exc.start})") from None
