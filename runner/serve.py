"""A checkpoint behind an OpenAI-compatible ``/v1/completions``: ``echo`` with prompt
``logprobs`` (one per prompt token, the first null), the contract lm-evaluation-harness's
``local-completions`` model and PriorForge's evaluation score models by; plus greedy or
sampled generation and ``/v1/models``. Standard library HTTP; one request at a time on the
model (a lock), any number of connections.
"""

from __future__ import annotations

import json
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from runner.scoring import Scorer

MAX_BODY = 16 << 20
MAX_PROMPTS = 256


class ServeError(ValueError):
    """A request the server cannot answer; sent back as a 400 with this message."""


def completions(scorer: Scorer, request: dict[str, Any], model_name: str) -> dict[str, Any]:
    prompts = request.get("prompt")
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise ServeError("prompt must be a string or a list of strings")
    if len(prompts) > MAX_PROMPTS:
        raise ServeError(f"at most {MAX_PROMPTS} prompts per request")
    max_tokens = request.get("max_tokens", 16)
    if not isinstance(max_tokens, int) or not 0 <= max_tokens <= 4096:
        raise ServeError("max_tokens must be an integer from 0 to 4096")
    try:
        temperature = float(request.get("temperature", 1.0) or 0.0)
    except (TypeError, ValueError):
        raise ServeError("temperature must be a number") from None
    echo = bool(request.get("echo", False))
    want_logprobs = request.get("logprobs") is not None
    echoes = scorer.prompt_logprobs(prompts) if echo else [None] * len(prompts)
    choices = []
    for index, (prompt, seen) in enumerate(zip(prompts, echoes, strict=True)):
        ids, text, chosen = scorer.generate(prompt, max_tokens, temperature, seed=index)
        generated = [scorer.tokenizer.decode([i], skip_special_tokens=False) for i in ids]
        tokens: list[str] = []
        offsets: list[int] = []
        logprobs: list[float | None] = []
        if seen is not None:
            tokens, offsets, logprobs = list(seen.tokens), list(seen.offsets), list(seen.logprobs)
        position = len(prompt) if echo else 0
        for piece, value in zip(generated, chosen, strict=True):
            tokens.append(piece)
            offsets.append(position)
            logprobs.append(value)
            position += len(piece)
        choice: dict[str, Any] = {
            "index": index,
            "text": (prompt if echo else "") + text,
            "finish_reason": "length",
            "logprobs": None,
        }
        if want_logprobs:
            choice["logprobs"] = {
                "tokens": tokens,
                "token_logprobs": logprobs,
                "text_offset": offsets,
                "top_logprobs": None,
            }
        choices.append(choice)
    prompt_tokens = sum(len(scorer.encode(p)[0]) for p in prompts)
    return {
        "id": f"cmpl-{time.monotonic_ns()}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": max_tokens * len(prompts),
            "total_tokens": prompt_tokens + max_tokens * len(prompts),
        },
    }


def make_server(scorer: Scorer, host: str, port: int, model_name: str) -> ThreadingHTTPServer:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002, ARG002
            return  # quiet: one line per scored batch would drown the run's own output

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: HTTPStatus, message: str) -> None:
            self._send(status, {"error": {"message": message, "type": "invalid_request_error"}})

        def do_GET(self) -> None:  # noqa: N802
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": model_name, "object": "model"}]})
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}")

        def do_POST(self) -> None:  # noqa: N802
            if self.path.rstrip("/") != "/v1/completions":
                self._error(
                    HTTPStatus.NOT_FOUND, f"no route {self.path}; this server has /v1/completions"
                )
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY} bytes")
                return
            try:
                request = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(request, dict):
                    raise ServeError("the body must be a JSON object")
                with lock:
                    body = completions(scorer, request, model_name)
            except (ValueError, ServeError) as exc:
                self._error(HTTPStatus.BAD_REQUEST, str(exc))
                return
            self._send(200, body)

    return ThreadingHTTPServer((host, port), Handler)
