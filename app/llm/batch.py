"""The OpenAI Batch API's files: request lines in, result and error lines out. Pure.

A batch input file holds at most 50,000 requests and less than 200 MB; each line names its
request with a ``custom_id`` that its result (in the output file) or its error (in the error
file) carries back. Results come in any order; a request the provider did not get to before
the batch expired appears in the error file (``batch_expired``), or nowhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

MAX_REQUESTS = 50_000
MAX_BYTES = 200 * 1000 * 1000 - 1
ENDPOINT: Final = "/v1/chat/completions"
COMPLETION_WINDOW: Final = "24h"
TERMINAL = ("completed", "expired", "failed", "cancelled")


def request_line(custom_id: str, body: dict[str, Any]) -> bytes:
    line = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
    return json.dumps(line, separators=(",", ":")).encode() + b"\n"


def split_files(
    lines: Iterable[bytes], max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES
) -> list[list[bytes]]:
    """The lines in order, cut into files of at most ``max_requests`` lines and ``max_bytes``."""
    files: list[list[bytes]] = []
    current: list[bytes] = []
    size = 0
    for line in lines:
        if len(line) > max_bytes:
            raise ValueError(f"one request is {len(line)} bytes, over a batch file's limit")
        if current and (len(current) >= max_requests or size + len(line) > max_bytes):
            files.append(current)
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current:
        files.append(current)
    return files


@dataclass
class BatchResults:
    """What came back, by custom_id: response bodies of the requests that succeeded, and a
    reason (the error's code) for each that did not."""

    completions: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def read_results(output: bytes | None, errors: bytes | None) -> BatchResults:
    results = BatchResults()
    for raw in (output or b"").splitlines() + (errors or b"").splitlines():
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            custom_id = str(line["custom_id"])
        except (ValueError, KeyError, TypeError):
            continue  # a line we cannot attribute: its request counts as missing
        response = line.get("response") or {}
        error = line.get("error")
        body = response.get("body") if isinstance(response, dict) else None
        status = response.get("status_code") if isinstance(response, dict) else None
        if error is None and status == 200 and isinstance(body, dict):
            results.completions[custom_id] = body
        elif custom_id not in results.completions:
            code = (error or {}).get("code") if isinstance(error, dict) else None
            results.errors[custom_id] = str(code or f"http_{status or 'unknown'}")
    return results
