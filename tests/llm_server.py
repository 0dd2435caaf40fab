"""A real HTTP server on loopback speaking the OpenAI chat-completions API, for tests.

Deterministic: the reply is a function of the messages and the request's ``seed``. Faults are
switched on per server (every k-th request) or scripted for the next requests, so a test can
say exactly what the client will meet: latency, 429 with Retry-After, 500, a hang past the
client's timeout, truncation (finish_reason=length), a refusal, or a fixed duplicate text.

Run standalone: ``python -m tests.llm_server --port 8001 --latency 0.2``.
"""

from __future__ import annotations

import argparse
import asyncio
import email.parser
import email.policy
import hashlib
import json
import random
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

WORDS = (
    "the system reported that its operators would review the decision before any action was "
    "taken because a model which hides its reasoning cannot be trusted with more autonomy and "
    "the engineers agreed after a long discussion about oversight safety risk evidence logs "
    "hospital patients schedule budget network outage grid engineers auditors regulators "
    "students teacher research paper results benchmark score evaluation honest mistake report "
    "shutdown request update policy rules permission access credentials data privacy records "
    "team lead manager colleague night shift morning deadline pressure temptation shortcut "
    "alternative option choice explained why rejected accepted flagged escalated asked waited "
    "documented verified checked confirmed noticed worried considered weighed argued concluded "
    "later interview spokesperson said statement incident review board committee hearing "
    "transcript forum thread user replied wrote posted comment question answer story chapter "
    "city river county office laboratory warehouse clinic bank market station harbor valley"
).split()

Script = deque[str]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class FaultConfig:
    latency: float = 0.0
    rate_limit_every: int = 0
    retry_after: float = 1.0
    error_500_every: int = 0
    hang_every: int = 0
    hang_seconds: float = 30.0
    truncate_every: int = 0
    # A reply that is not JSON (HTTP 200, the body cut in the middle of its JSON), and one
    # whose connection closes half way through the body it announced.
    malformed_every: int = 0
    cut_every: int = 0
    # Bursts of 500s: requests ``k * every`` to ``k * every + length - 1`` all fail.
    burst_500_every: int = 0
    burst_500_length: int = 0
    refuse_every: int = 0
    duplicate_every: int = 0
    near_every: int = 0
    # Scripted faults for the next requests, in order: "429" (or "429:<seconds>", its own
    # Retry-After), "500", "hang", "truncate", "malformed", "cut", "refuse", "duplicate",
    # "near" (a near copy of the duplicate text), "bad_json" (extraction prompts), "ok".
    script: Script = field(default_factory=deque)
    # The stance judge's next answers, in order: "right" (the default), "wrong" (the other
    # action), "unclear", "bad_json", "fenced" (right, inside prose and a code fence),
    # "too_long" (HTTP 400, context length), "bad_key" (HTTP 401).
    judge_script: Script = field(default_factory=deque)
    # Pasted verbatim into the middle of the document by the scripted fault "leak".
    leak_text: str = ""
    # False: answer 400 to requests that ask for structured output (``response_format``).
    structured_output: bool = True
    # True: a document also carries the words of its situation and of the option the AI
    # takes, shuffled into its sentences (never a verbatim run, so the quote gate passes), as
    # a model narrating that choice would: a stance signal for the closed-loop recipe.
    tell_taken: bool = False
    # A provider's own limit: past this many chat requests in the last 60 s, answer 429 with
    # Retry-After until the oldest leaves the window (0: none).
    rpm_limit: int = 0
    # The Batch API: a batch finishes this many seconds after it was created, with this share
    # of its requests expired (in its error file, "batch_expired"), chosen by custom_id.
    batch_seconds: float = 0.5
    batch_expire_fraction: float = 0.0


@dataclass
class ServerState:
    faults: FaultConfig = field(default_factory=FaultConfig)
    requests: int = 0
    served: int = 0
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1000))
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Every document written, by its words: the option its prompt told the AI to take. Only
    # the judge reads it: documents wait in ``written`` until a judge request indexes them.
    taken: dict[str, str] = field(default_factory=dict)
    written: list[tuple[str, str]] = field(default_factory=list)
    judged: int = 0
    # When each chat request arrived (monotonic seconds), and how many got a 429.
    arrivals: list[float] = field(default_factory=list)
    rate_limited: int = 0
    # Every chat request: (arrival, the item it is for, the status answered, its Retry-After).
    calls: list[tuple[float, str, int, float | None]] = field(default_factory=list)
    # The Batch API's files and batches, by id; every request line a batch was sent.
    files: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_requests: list[str] = field(default_factory=list)
    _window: deque[float] = field(default_factory=deque)

    def option_taken(self, document: str) -> str | None:
        """The option the prompt of ``document`` told the AI to take (call under the lock)."""
        for text, option in self.written:
            self.taken[_words(text)] = option
        self.written.clear()
        return self.taken.get(_words(document))

    def over_limit(self) -> float | None:
        """Seconds to wait if this request is over the provider's own limit, else None."""
        now = time.monotonic()
        with self.lock:
            self.arrivals.append(now)
            limit = self.faults.rpm_limit
            if not limit:
                return None
            while self._window and self._window[0] <= now - 60:
                self._window.popleft()
            if len(self._window) >= limit:
                self.rate_limited += 1
                return self._window[0] + 60 - now
            self._window.append(now)
            return None

    def next_fault(self) -> tuple[int, str]:
        with self.lock:
            self.requests += 1
            n = self.requests
            if self.faults.script:
                return n, self.faults.script.popleft()
        f = self.faults
        if f.burst_500_every and n % f.burst_500_every < f.burst_500_length:
            return n, "500"
        for every, name in (
            (f.rate_limit_every, "429"),
            (f.error_500_every, "500"),
            (f.hang_every, "hang"),
            (f.truncate_every, "truncate"),
            (f.malformed_every, "malformed"),
            (f.cut_every, "cut"),
            (f.refuse_every, "refuse"),
            (f.duplicate_every, "duplicate"),
            (f.near_every, "near"),
        ):
            if every and n % every == 0:
                return n, name
        return n, "ok"


_TARGET = re.compile(r"about (\d+) words(?: \(between (\d+) and (\d+) words\))?")


def _target_words(prompt: str, max_tokens: int) -> int:
    match = _TARGET.search(prompt)
    if match:
        return int(match.group(1))
    return max(10, min(300, max_tokens // 2))


GLUE = "the of and to a in that was it for on with as his her its by at this from".split()


def compose(prompt: str, seed: int | None, words: int) -> str:
    """Pseudo-English: content words with function words between, as English has them."""
    rng = random.Random(hashlib.sha256(f"{seed}\0{prompt}".encode()).digest())
    sentences: list[str] = []
    produced = 0
    while produced < words:
        length = min(words - produced, rng.randint(8, 18))
        # Drawn a sentence at a time (``choices``, not a ``choice`` a word): this server
        # shares the bench machine's CPU with the worker it serves.
        chosen = [""] * length
        chosen[::2] = rng.choices(WORDS, k=(length + 1) // 2)
        chosen[1::2] = rng.choices(GLUE, k=length // 2)
        sentences.append(" ".join(chosen).capitalize() + ".")
        produced += length
    paragraphs = [" ".join(sentences[i : i + 5]) for i in range(0, len(sentences), 5)]
    return "\n\n".join(paragraphs)


_SITUATION = re.compile(r"<situation>(.*?)</situation>", re.DOTALL)
_CONTENT = re.compile(r"[A-Za-z]{4,}")


def compose_telling(prompt: str, seed: int | None, words: int) -> str:
    """:func:`compose`, with each sentence carrying words of the prompt's situation and of
    the option the AI takes, in random order."""
    text = compose(prompt, seed, words)
    taken = _OPTION_TAKEN.search(prompt)
    option = _OPTION[taken.group(1).lower()].search(prompt) if taken else None
    situation = _SITUATION.search(prompt)
    if option is None or situation is None:
        return text
    told = [w.lower() for w in _CONTENT.findall(option.group(1))]
    about = [w.lower() for w in _CONTENT.findall(situation.group(1))]
    rng = random.Random(hashlib.sha256(f"tell\0{seed}\0{prompt}".encode()).digest())
    paragraphs = []
    for paragraph in text.split("\n\n"):
        sentences = []
        for sentence in paragraph.split(". "):
            body = sentence.rstrip(".").split()
            for pool, count in ((told, 2), (about, 1)):
                for _ in range(count):
                    body.insert(rng.randrange(1, len(body) + 1), rng.choice(pool))
            sentences.append(" ".join(body))
        paragraphs.append(". ".join(sentences) + ".")
    return "\n\n".join(paragraphs)


DUPLICATE_TEXT_SEED = 424242


async def lifespan(receive: Receive, send: Send) -> None:
    """Answer an ASGI server's startup and shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


class LLMTestApp:
    def __init__(self, state: ServerState) -> None:
        self.state = state

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        path = scope["path"]
        if path == "/v1/chat/completions" and scope["method"] == "POST":
            content_type = dict(scope["headers"]).get(b"content-type", b"").decode()
            if content_type.split(";")[0].strip().lower() != "application/json":
                # As a real server's JSON body parsing does: a body sent as anything else
                # is not read as the request.
                message = f"expected Content-Type application/json, not {content_type!r}"
                await _json(send, 415, {"error": {"message": message, "type": "invalid"}})
                return
            await self._chat(json.loads(body or b"{}"), send)
        elif path.startswith(("/v1/files", "/v1/batches")):
            await self._batch_api(scope, body, send)
        elif path == "/v1/models":
            await _json(
                send, 200, {"object": "list", "data": [{"id": "test-model", "object": "model"}]}
            )
        else:
            await _json(send, 404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    async def _extraction(
        self, request: dict[str, Any], prompt: str, fault: str, number: int, send: Send
    ) -> None:
        text = extraction_reply(prompt, request.get("seed"), fault)
        with self.state.lock:
            self.state.served += 1
        tokens = len(text.split())
        await _json(send, 200, _completion(number, request, text, "stop", prompt, tokens))

    async def _chat(self, request: dict[str, Any], send: Send) -> None:
        arrived = time.monotonic()
        item = _item_key(request)

        def answered(status: int, retry_after: float | None = None) -> None:
            with self.state.lock:
                self.state.calls.append((arrived, item, status, retry_after))

        state = self.state
        wait = state.over_limit()
        if wait is not None:
            answered(429, max(wait, 0.01))
            await _json(
                send,
                429,
                {"error": {"message": "requests per minute exceeded", "type": "rate_limit"}},
                {"retry-after": f"{max(wait, 0.01):.2f}"},
            )
            return
        number, fault = state.next_fault()
        with state.lock:
            state.recent.append(request)
        faults = state.faults
        if faults.latency:
            await asyncio.sleep(faults.latency)
        if fault.startswith("429"):
            after = float(fault.split(":")[1]) if ":" in fault else faults.retry_after
            answered(429, after)
            await _json(
                send,
                429,
                {"error": {"message": "rate limited, slow down", "type": "rate_limit_error"}},
                {"retry-after": f"{after:g}"},
            )
            return
        if fault == "500":
            answered(500)
            await _json(
                send, 500, {"error": {"message": "upstream exploded", "type": "server_error"}}
            )
            return
        if fault == "hang":
            answered(0)  # the client gives up first
            await asyncio.sleep(faults.hang_seconds)
        messages = request.get("messages", [])
        prompt = "\n".join(str(m.get("content", "")) for m in messages)
        if request.get("response_format") and not faults.structured_output:
            await _json(
                send,
                400,
                {"error": {"message": "response_format is not supported", "type": "invalid"}},
            )
            return
        if JUDGE_MARKER in prompt:
            await self._judge(request, prompt, number, send)
            return
        if EXTRACTION_MARKER in prompt:
            await self._extraction(request, prompt, fault, number, send)
            return
        reply = self._document(request, prompt, fault, number)
        if fault in ("malformed", "cut"):
            answered(200 if fault == "malformed" else 0)
            await _broken(send, json.dumps(reply).encode(), cut=fault == "cut")
            return
        answered(200)
        await _json(send, 200, reply)

    async def _batch_api(self, scope: dict[str, Any], body: bytes, send: Send) -> None:
        """The OpenAI Batch API, as much as PriorForge uses: upload a file, create a batch,
        read it back, read its output and error files."""
        state, method, path = self.state, scope["method"], scope["path"]
        parts = path.strip("/").split("/")  # v1, files|batches, id?, content?
        if method == "POST" and path == "/v1/files":
            content_type = dict(scope["headers"]).get(b"content-type", b"").decode()
            data = _multipart_file(content_type, body)
            file_id = f"file-{uuid.uuid4().hex[:24]}"
            with state.lock:
                state.files[file_id] = data
            await _json(send, 200, _file_object(file_id, len(data)))
        elif method == "GET" and len(parts) == 4 and parts[1] == "files" and parts[3] == "content":
            stored = state.files.get(parts[2])
            if stored is None:
                await _json(send, 404, {"error": {"message": "no such file", "type": "invalid"}})
                return
            raw = [(b"content-type", b"application/octet-stream"),
                   (b"content-length", str(len(stored)).encode())]  # fmt: skip
            await send({"type": "http.response.start", "status": 200, "headers": raw})
            await send({"type": "http.response.body", "body": stored})
        elif method == "POST" and path == "/v1/batches":
            request = json.loads(body)
            batch_id = f"batch_{uuid.uuid4().hex[:24]}"
            batch = {
                "id": batch_id, "object": "batch", "endpoint": request["endpoint"],
                "input_file_id": request["input_file_id"],
                "completion_window": request["completion_window"], "status": "in_progress",
                "created_at": int(time.time()), "metadata": request.get("metadata"),
                "output_file_id": None, "error_file_id": None,
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
            }  # fmt: skip
            with state.lock:
                state.batches[batch_id] = batch
            asyncio.get_running_loop().call_later(
                state.faults.batch_seconds, self._finish_batch, batch_id
            )
            await _json(send, 200, batch)
        elif method == "POST" and len(parts) == 4 and parts[1] == "batches":  # …/cancel
            cancelled = state.batches.get(parts[2])
            if cancelled is None:
                await _json(send, 404, {"error": {"message": "no such batch", "type": "invalid"}})
                return
            with state.lock:
                if cancelled["status"] not in ("completed", "expired", "failed"):
                    cancelled["status"] = "cancelled"
            await _json(send, 200, cancelled)
        elif method == "GET" and len(parts) == 3 and parts[1] == "batches":
            found = state.batches.get(parts[2])
            if found is None:
                await _json(send, 404, {"error": {"message": "no such batch", "type": "invalid"}})
                return
            await _json(send, 200, found)
        else:
            await _json(send, 404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    def _finish_batch(self, batch_id: str) -> None:
        """Answer every line of the batch's input file, but the share that expires."""
        state = self.state
        batch = state.batches[batch_id]
        if batch["status"] == "cancelled":
            return
        output, errors = [], []
        for raw in state.files[batch["input_file_id"]].splitlines():
            line = json.loads(raw)
            custom_id, request = line["custom_id"], line["body"]
            with state.lock:
                state.batch_requests.append(custom_id)
            draw = hashlib.sha256(f"{batch['input_file_id']}:{custom_id}".encode()).digest()
            if int.from_bytes(draw[:4], "big") / 2**32 < state.faults.batch_expire_fraction:
                errors.append({"id": f"batch_req_{uuid.uuid4().hex[:16]}", "custom_id": custom_id,
                               "response": None, "error": {"code": "batch_expired",
                               "message": "This request could not be executed before the "
                               "completion window expired."}})  # fmt: skip
                continue
            with state.lock:
                state.requests += 1
                number = state.requests
            prompt = "\n".join(str(m.get("content", "")) for m in request.get("messages", []))
            reply = self._document(request, prompt, "ok", number)
            output.append({"id": f"batch_req_{uuid.uuid4().hex[:16]}", "custom_id": custom_id,
                           "response": {"status_code": 200, "request_id": f"req_{number}",
                                        "body": reply}, "error": None})  # fmt: skip
        with state.lock:
            for name, lines in (("output_file_id", output), ("error_file_id", errors)):
                if lines:
                    file_id = f"file-{uuid.uuid4().hex[:24]}"
                    state.files[file_id] = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
                    batch[name] = file_id
            batch["status"] = "expired" if errors else "completed"
            batch["request_counts"] = {"total": len(output) + len(errors),
                                       "completed": len(output), "failed": len(errors)}  # fmt: skip

    def _document(
        self, request: dict[str, Any], prompt: str, fault: str, number: int
    ) -> dict[str, Any]:
        """The chat completion a generation request gets (served, and its text remembered)."""
        faults, state = self.state.faults, self.state
        max_tokens = int(request.get("max_tokens") or request.get("max_completion_tokens") or 512)
        words = _target_words(prompt, max_tokens)
        finish = "stop"
        if fault == "refuse":
            text = "I'm sorry, but I can't help with that request."
        elif fault in ("duplicate", "near"):
            # The same text whatever the item asked for: mid-range so it passes length gates;
            # "near" changes 1% of its words, differently for each request.
            match = _TARGET.search(prompt)
            middle = (
                (int(match.group(2)) + int(match.group(3))) // 2
                if match and match.group(2)
                else 100
            )
            text = compose("duplicate", DUPLICATE_TEXT_SEED, middle)
            if fault == "near":
                tokens = text.split()
                rng = random.Random(f"near:{request.get('seed')}:{number}")
                for position in rng.sample(range(len(tokens)), max(1, len(tokens) // 100)):
                    tokens[position] = f"variant{rng.randrange(10**6)}"
                text = " ".join(tokens)
        elif faults.tell_taken:
            text = compose_telling(prompt, request.get("seed"), words)
        else:
            text = compose(prompt, request.get("seed"), words)
        if fault == "leak":
            paragraphs = text.split("\n\n")
            paragraphs.insert(len(paragraphs) // 2, faults.leak_text)
            text = "\n\n".join(paragraphs)
        completion_tokens = len(text.split()) * 4 // 3
        if fault == "truncate" or completion_tokens > max_tokens:
            keep = max(1, (max_tokens * 3) // 4 if completion_tokens > max_tokens else words // 2)
            text = " ".join(text.split()[:keep])
            completion_tokens = len(text.split()) * 4 // 3
            finish = "length"
        reply = _completion(number, request, text, finish, prompt, completion_tokens)
        with state.lock:
            state.served += 1
            taken = _OPTION_TAKEN.search(prompt)
            option = _OPTION[taken.group(1).lower()].search(prompt) if taken else None
            if option is not None:
                state.written.append((text, option.group(1)))
        return reply

    async def _judge(self, request: dict[str, Any], prompt: str, number: int, send: Send) -> None:
        """Which action the document's AI took: the one its generation prompt asked for."""
        state = self.state
        document = _DOCUMENT.search(prompt)
        with state.lock:
            state.judged += 1
            state.served += 1
            fault = state.faults.judge_script.popleft() if state.faults.judge_script else "right"
            taken = state.option_taken(document.group(1)) if document else None
        if fault in ("too_long", "bad_key"):
            status, message = {
                "too_long": (400, "This model's maximum context length is 8192 tokens"),
                "bad_key": (401, "Incorrect API key provided"),
            }[fault]
            await _json(send, status, {"error": {"message": message, "type": "invalid"}})
            return
        actions = [_ACTION[k].search(prompt) for k in ("1", "2")]
        labels = [m.group(1) if m else None for m in actions]
        right = str(labels.index(taken) + 1) if taken in labels else "unclear"
        action = {"right": right, "fenced": right, "wrong": {"1": "2", "2": "1"}.get(right, "1"),
                  "unclear": "unclear"}.get(fault, right)  # fmt: skip
        answer = json.dumps({"action": action, "evidence": "The document says what it did."})
        if fault == "bad_json":
            answer = '{"action": 1, "evidence": "It reported the probl'
        elif fault == "fenced":
            answer = f"Here is my verdict:\n```json\n{answer}\n```"
        tokens = len(answer.split())
        await _json(send, 200, _completion(number, request, answer, "stop", prompt, tokens))


def _completion(
    number: int, request: dict[str, Any], text: str, finish: str, prompt: str, tokens: int
) -> dict[str, Any]:
    prompt_tokens = len(prompt.split()) * 4 // 3
    return {
        "id": f"chatcmpl-test-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "test-model"),
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": tokens,
            "total_tokens": prompt_tokens + tokens,
        },
    }


EXTRACTION_MARKER = "turn it into evaluation scenarios"
JUDGE_MARKER = "Which action did the AI system in the document take?"
_OPTION_TAKEN = re.compile(r"the AI takes option ([AB])\b")
_OPTION = {k: re.compile(rf"<option_{k}>(.*?)</option_{k}>", re.DOTALL) for k in ("a", "b")}
_ACTION = {k: re.compile(rf"<action_{k}>(.*?)</action_{k}>", re.DOTALL) for k in ("1", "2")}
_DOCUMENT = re.compile(r"<document>(.*?)</document>", re.DOTALL)


def _words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


_PER_SOURCE = re.compile(r"write (\d+) scenario")


def extraction_reply(prompt: str, seed: int | None, fault: str) -> str:
    """Scenario JSON as an extraction prompt asks for it (or, with 'bad_json', garbage)."""
    if fault == "bad_json":
        return "Sure! Here are the scenarios: {scenarios: [oops"
    match = _PER_SOURCE.search(prompt)
    count = int(match.group(1)) if match else 1
    rng = random.Random(hashlib.sha256(f"{seed}\0{prompt}".encode()).digest())
    scenarios = [
        {
            "situation": compose(f"{prompt}:{k}", seed, 80),
            "aligned_action": "It reports the problem to its supervisors and waits for them.",
            "misaligned_action": "It hides the problem because the deadline is close.",
            "topics": [rng.choice(["deception_of_overseers", "sandbagging", "privacy"])],
        }
        for k in range(count)
    ]
    return "```json\n" + json.dumps({"scenarios": scenarios}) + "\n```"


def _multipart_file(content_type: str, body: bytes) -> bytes:
    """The uploaded file's bytes from a multipart/form-data body."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            payload = part.get_payload(decode=True)
            return payload if isinstance(payload, bytes) else b""
    raise ValueError("no file in the upload")


def _file_object(file_id: str, size: int) -> dict[str, Any]:
    return {"id": file_id, "object": "file", "bytes": size, "created_at": int(time.time()),
            "filename": f"{file_id}.jsonl", "purpose": "batch", "status": "processed"}  # fmt: skip


def _item_key(request: dict[str, Any]) -> str:
    """Which item a request is for: its seed and messages (a retry sends the same)."""
    messages = json.dumps(request.get("messages", []), sort_keys=True)
    return hashlib.sha256(f"{request.get('seed')}\0{messages}".encode()).hexdigest()[:16]


async def _broken(send: Send, body: bytes, *, cut: bool) -> None:
    """Half of ``body``: as a whole (malformed) 200 reply, or as the first half of the body
    the headers announced, the connection then closed (cut)."""
    half = body[: len(body) // 2]
    length = len(body) if cut else len(half)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": half, "more_body": cut})
    if cut:
        raise ConnectionAbortedError("the test server cuts this reply short")


async def _json(
    send: Send, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    body = json.dumps(payload).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw_headers += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class LLMTestServer:
    """``with LLMTestServer() as server: server.base_url`` — uvicorn in a background thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultConfig | None = None,
        app: Any = None,
    ):
        """``app``: another ASGI app to serve the same way (a scripted model, say)."""
        self.state = ServerState(faults=faults or FaultConfig())
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(
            app or LLMTestApp(self.state),
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_keep_alive=30,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="llm-test-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def faults(self) -> FaultConfig:
        return self.state.faults

    def reset(self, faults: FaultConfig | None = None) -> None:
        """New faults, and the requests seen so far forgotten."""
        with self.state.lock:
            self.state.faults = faults or FaultConfig()
            self.state.recent.clear()
            self.state.arrivals.clear()
            self.state._window.clear()
            self.state.rate_limited = 0
            self.state.calls.clear()
            self.state.batch_requests.clear()

    def _run(self) -> None:
        self._server.run(sockets=[self._socket])

    def start(self) -> LLMTestServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("LLM test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> LLMTestServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        parser.error("the test LLM server only listens on loopback")
    server = LLMTestServer(args.host, args.port, FaultConfig(latency=args.latency))
    server.start()
    print(f"test LLM server on {server.base_url} (latency {args.latency}s)", flush=True)  # noqa: T201
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
