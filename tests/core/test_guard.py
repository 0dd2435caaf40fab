"""The route guard: every bad input a clear 4xx problem, checked before endpoint code runs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest

from tests.conftest import Team, spec

PROBLEM = "application/problem+json"
INT32_MAX = 2**31 - 1


def assert_problem(response: Any, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    for word in words:
        assert word in body["detail"], body
    return body


# -- 1. NUL characters and unpaired surrogates -------------------------------------------


@pytest.mark.parametrize("field", ["name", "model"])
def test_a_nul_in_a_job_spec_string_is_422(client: Any, team: Team, field: str) -> None:
    response = client.post(
        "/v1/jobs", json=spec(**{field: "a\u0000b"}), headers=team.headers("submit")
    )
    body = assert_problem(response, 422, "NUL")
    assert body["errors"] == [{"field": field, "message": body["errors"][0]["message"]}]
    assert client.get("/v1/jobs", headers=team.headers()).json()["items"] == []


@pytest.mark.parametrize("field", ["title", "text"])
def test_a_nul_in_an_extraction_source_is_422(client: Any, team: Team, field: str) -> None:
    source = {"title": "A source", "text": "word " * 60}
    source[field] = source[field][:20] + "\u0000" + source[field][20:]
    response = client.post(
        "/v1/scenarios/extract", json={"sources": [source]}, headers=team.headers("submit")
    )
    body = assert_problem(response, 422, "NUL")
    assert body["errors"][0]["field"] == f"sources.0.{field}"


def test_an_unpaired_surrogate_in_a_body_is_422(client: Any, team: Team) -> None:
    raw = json.dumps(spec(name="x")).replace('"x"', '"\\ud800"').encode()
    response = client.post(
        "/v1/jobs",
        content=raw,
        headers=team.headers("submit", **{"Content-Type": "application/json"}),
    )
    assert_problem(response, 422, "surrogate")


def test_a_nul_in_an_object_key_is_422(client: Any, team: Team) -> None:
    response = client.post(
        "/v1/jobs", json=spec(stances={"a\u0000": 1}), headers=team.headers("submit")
    )
    assert_problem(response, 422, "NUL")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/jobs?dataset=%00",
        "/v1/jobs?cursor=a%00b",
        "/v1/scenarios?cursor=%00",
        "/v1/datasets/x/versions?%00=1",
    ],
)
def test_a_nul_in_a_query_parameter_is_422(client: Any, team: Team, path: str) -> None:
    assert_problem(client.get(path, headers=team.headers()), 422, "NUL")


# -- 2. integers a database column cannot hold --------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/datasets/x/versions/{INT32_MAX + 1}/manifest",
        f"/v1/datasets/x/versions/{INT32_MAX + 1}/files/x",
        f"/v1/datasets/x/versions/{10**30}/manifest",
    ],
)
def test_a_version_beyond_32_bits_is_422(client: Any, team: Team, path: str) -> None:
    assert_problem(client.get(path, headers=team.headers()), 422, "version")


@pytest.mark.parametrize("what", ["documents", "items"])
@pytest.mark.parametrize("cursor", [str(INT32_MAX + 1), "99999999999999999999", "-1", "1e3"])
def test_an_index_cursor_beyond_32_bits_is_422(
    client: Any, team: Team, what: str, cursor: str
) -> None:
    job = client.post("/v1/jobs", json=spec(), headers=team.headers("submit")).json()
    response = client.get(
        f"/v1/jobs/{job['id']}/{what}", params={"cursor": cursor}, headers=team.headers()
    )
    assert_problem(response, 422, "cursor")


def test_an_index_cursor_at_the_32_bit_limit_is_an_empty_page(client: Any, team: Team) -> None:
    job = client.post("/v1/jobs", json=spec(), headers=team.headers("submit")).json()
    page = client.get(
        f"/v1/jobs/{job['id']}/items", params={"cursor": str(INT32_MAX)}, headers=team.headers()
    )
    assert page.status_code == 200
    assert page.json() == {"items": [], "next_cursor": None}


# -- 3. an empty Idempotency-Key ----------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/scenarios/extract"])
def test_an_empty_idempotency_key_is_422_every_time(client: Any, team: Team, path: str) -> None:
    body = spec() if path == "/v1/jobs" else {"sources": [{"title": "t", "text": "w " * 150}]}
    for _ in range(2):
        response = client.post(
            path, json=body, headers=team.headers("submit", **{"Idempotency-Key": ""})
        )
        assert_problem(response, 422, "idempotency-key")
    assert client.get("/v1/jobs", headers=team.headers()).json()["items"] == []


# -- 4. unexpected errors are problems with a request id ----------------------------------


def test_an_unexpected_error_is_a_500_problem_with_a_logged_request_id(
    team: Team, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from fastapi.testclient import TestClient

    from app.jobs import service
    from app.main import create_app

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(service, "list_jobs", broken)
    with (
        caplog.at_level(logging.ERROR),
        TestClient(create_app(), raise_server_exceptions=False) as client,
    ):
        response = client.get("/v1/jobs", headers=team.headers())
    body = assert_problem(response, 500, response.headers["x-request-id"])
    logged = [r for r in caplog.records if body["request_id"] in r.getMessage()]
    assert logged, caplog.text
    assert logged[0].exc_info is not None
    assert "a bug" not in body["detail"]  # tracebacks stay in the log


def test_a_client_request_id_is_kept(client: Any) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "trace-42"})
    assert response.headers["x-request-id"] == "trace-42"
    unsafe = client.get("/healthz", headers={"X-Request-ID": "bad id\t!"})
    assert unsafe.headers["x-request-id"] != "bad id\t!"


# -- 5. bodies: authentication first, limits while streaming, media types -----------------


class Received:
    """An ASGI conversation: a body sent in chunks, counting what the app consumed."""

    def __init__(self, body_chunks: Iterator[bytes]) -> None:
        self.chunks = body_chunks
        self.consumed = 0
        self.status: int | None = None
        self.body = b""

    async def receive(self) -> dict[str, Any]:
        chunk = next(self.chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        self.consumed += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")


def call(
    path: str,
    headers: dict[str, str],
    chunks: Iterator[bytes],
    query: str = "",
) -> Received:
    from app.main import app

    received = Received(chunks)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, received.receive, received.send))
    return received


def megabytes(count: int, fill: bytes = b" ") -> Iterator[bytes]:
    block = fill * (1 << 20)
    for _ in range(count):
        yield block


@pytest.mark.parametrize(
    ("path", "query", "content_type"),
    [
        ("/v1/jobs", "", "application/json"),
        ("/v1/scenarios", "", "application/jsonl"),
        ("/v1/eval-sets", "name=s1", "application/jsonl"),
    ],
)
@pytest.mark.parametrize("key", ["none", "wrong"])
def test_a_body_without_a_valid_key_is_401_and_never_read(
    path: str, query: str, content_type: str, key: str
) -> None:
    headers = {"Content-Type": content_type, "Content-Length": str(120 << 20)}
    if key == "wrong":
        headers["Authorization"] = "Bearer pf_000000000000_nope"
    received = call(path, headers, megabytes(120), query)
    assert received.status == 401, received.body[:300]
    assert received.consumed == 0
    assert json.loads(received.body)["status"] == 401


def test_a_read_key_is_403_before_the_body_is_read(team: Team) -> None:
    headers = team.headers("read", **{"Content-Type": "application/json"})
    received = call("/v1/jobs", headers, megabytes(5))
    assert received.status == 403
    assert received.consumed == 0


def test_a_declared_length_over_the_limit_is_413_unread(team: Team) -> None:
    headers = team.headers(
        "submit", **{"Content-Type": "application/json", "Content-Length": str(200 << 20)}
    )
    received = call("/v1/jobs", headers, megabytes(200))
    assert received.status == 413
    assert received.consumed == 0
    assert "at most 1 MiB" in json.loads(received.body)["detail"]


@pytest.mark.parametrize(
    ("path", "query", "content_type", "limit_mib"),
    [
        ("/v1/jobs", "", "application/json", 1),
        ("/v1/prompts/preview", "", "application/json", 1),
        ("/v1/scenarios/extract", "", "application/json", 32),
        ("/v1/scenarios", "", "application/jsonl", 64),
    ],
)
def test_a_streamed_body_is_cut_off_just_past_the_limit(
    team: Team, path: str, query: str, content_type: str, limit_mib: int
) -> None:
    headers = team.headers("submit", **{"Content-Type": content_type})  # chunked: no length
    received = call(path, headers, megabytes(limit_mib + 50), query)
    assert received.status == 413, received.body[:300]
    assert received.consumed == (limit_mib + 1) << 20  # stopped at the first chunk past it


def test_json_sent_as_text_plain_is_415(client: Any, team: Team) -> None:
    response = client.post(
        "/v1/jobs",
        content=json.dumps(spec()).encode(),
        headers=team.headers("submit", **{"Content-Type": "text/plain"}),
    )
    body = assert_problem(response, 415, "application/json")
    assert body["accepted"] == ["application/json"]


def test_jsonl_sent_as_a_form_is_415(client: Any, team: Team) -> None:
    response = client.post(
        "/v1/scenarios",
        content=b'{"id": "x"}\n',
        headers=team.headers("submit", **{"Content-Type": "application/x-www-form-urlencoded"}),
    )
    assert_problem(response, 415, "application/jsonl")


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"{not json", "line 1 column 2"),
        (b'{"dataset": "x",\n "documents": }', "line 2 column 15"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"documents": ' + b"9" * 5000 + b"}", "digits"),
        (b"\xff\xfe", "JSON"),
    ],
)
def test_malformed_json_is_422_naming_the_body_and_position(
    client: Any, team: Team, raw: bytes, words: str
) -> None:
    response = client.post(
        "/v1/jobs",
        content=raw,
        headers=team.headers("submit", **{"Content-Type": "application/json"}),
    )
    body = assert_problem(response, 422, words)
    assert body["errors"][0]["field"] == "(body)"


# -- 9. the HTTP surface matches its description ------------------------------------------


def test_405_names_every_method_of_the_path(client: Any, team: Team) -> None:
    response = client.post("/v1/datasets/x/versions/1/files/x", headers=team.headers())
    assert_problem(response, 405)
    assert response.headers["allow"] == "GET, HEAD"
    jobs = client.delete("/v1/jobs", headers=team.headers())
    assert jobs.headers["allow"] == "GET, POST"


def test_an_unknown_path_is_a_404_problem(client: Any) -> None:
    assert_problem(client.get("/v2/nothing"), 404, "/v2/nothing")


def test_an_integral_number_is_an_integer_as_json_schema_says(client: Any, team: Team) -> None:
    response = client.post("/v1/jobs", json=spec(documents=6.0), headers=team.headers("submit"))
    assert response.status_code == 202, response.text
    assert response.json()["progress"]["requested"] == 6


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_json_number_literals_are_422(client: Any, team: Team, literal: bytes) -> None:
    raw = b'{"dataset": "x", "documents": 1, "max_attempts_factor": ' + literal + b"}"
    response = client.post(
        "/v1/jobs",
        content=raw,
        headers=team.headers("submit", **{"Content-Type": "application/json"}),
    )
    assert_problem(response, 422, "not a JSON number")
