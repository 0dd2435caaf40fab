"""Raw request bodies (JSONL uploads), size-limited and decoded with a clear error."""

from __future__ import annotations

from fastapi import Request

from app.core.errors import InvalidRequest

MAX_BODY_BYTES = 64 * 1024 * 1024


async def raw_body(request: Request) -> bytes:
    """Read the body on the event loop so the endpoint itself can be plain (sync) code."""
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise InvalidRequest(f"body over {MAX_BODY_BYTES // (1024 * 1024)} MiB; split the file")
    return body


def utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"the body is not UTF-8 (byte {exc.start})") from None


JSONL_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/jsonl": {"schema": {"type": "string"}}},
    }
}
