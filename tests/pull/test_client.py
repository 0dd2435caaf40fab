"""The pull client's parts on their own: targets, manifests, ranges, problems, verification."""

from __future__ import annotations

import email.message
import hashlib
import io
import json
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from app.pull import Client, PullError, iter_files, parse_target, verify
from app.pull.client import _owner_query, _problem, _ranges, files_of


def http_error(code: int, body: bytes, reason: str = "Reason") -> urllib.error.HTTPError:
    return urllib.error.HTTPError(
        "http://x/y", code, reason, email.message.Message(), io.BytesIO(body)
    )


def test_problems_name_the_status_the_path_the_detail_and_the_fix() -> None:
    def problem(code: int, body: dict[str, Any]) -> str:
        return _problem(http_error(code, json.dumps(body).encode()), "/v1/x")

    assert problem(404, {"detail": "dataset 'a' not found"}) == (
        "404 on /v1/x: dataset 'a' not found"
    )
    assert problem(401, {"detail": "no key"}) == (
        "401 on /v1/x: no key (set PRIORFORGE_API_KEY or --api-key)"
    )
    assert (
        problem(403, {"detail": "read only"}) == "403 on /v1/x: read only (the key lacks the role)"
    )
    errors = [{"loc": ["body", "exports", 0, "fraction"], "msg": "too big"}] * 6 + ["plain"]
    assert problem(422, {"detail": "invalid", "errors": errors}) == (
        "422 on /v1/x: invalid: " + "; ".join(["body.exports.0.fraction: too big"] * 5)
    )
    mixed = [{"msg": "no location"}, "a string"]
    assert problem(422, {"detail": "bad", "errors": mixed}) == (
        "422 on /v1/x: bad: : no location; a string"
    )
    assert problem(422, {"detail": "bad", "errors": [{"loc": ["q"]}]}).startswith(
        "422 on /v1/x: bad: q: {"
    )
    assert _problem(http_error(502, b"<html>gateway</html>", "Bad Gateway"), "/p") == (
        "502 on /p: Bad Gateway"
    )
    assert _problem(http_error(500, b"[1, 2]", "Oops"), "/p") == "500 on /p: Oops"


def test_owner_queries() -> None:
    assert _owner_query(None) == ""
    assert _owner_query(None, "redirect=1") == "?redirect=1"
    assert _owner_query("team a/b") == "?owner=team%20a%2Fb"
    assert _owner_query("t", "redirect=1") == "?owner=t&redirect=1"


def test_targets() -> None:
    assert parse_target("corpus") == ("corpus", None)
    assert parse_target("corpus@") == ("corpus", None)
    assert parse_target("corpus@latest") == ("corpus", None)
    assert parse_target("corpus@1") == ("corpus", 1)
    for bad, message in [
        ("@3", "give DATASET or DATASET@VERSION"),
        ("corpus@0", "a number from 1, or 'latest'"),
        ("corpus@-1", "a number from 1"),
        ("corpus@v2", "a number from 1"),
    ]:
        with pytest.raises(PullError, match=message):
            parse_target(bad)


def test_ranges_cover_a_file_exactly() -> None:
    assert _ranges(0, 10) == [(0, -1)]
    assert _ranges(10, 10) == [(0, 9)]
    assert _ranges(11, 10) == [(0, 9), (10, 10)]
    assert _ranges(25, 10) == [(0, 9), (10, 19), (20, 24)]


def test_clients_take_http_and_https_and_drop_a_trailing_slash() -> None:
    assert Client("https://api.example/", "k").base_url == "https://api.example"
    assert Client("http://127.0.0.1:8000//", None).base_url == "http://127.0.0.1:8000"
    assert Client("http://h", None).timeout == 60
    for bad in ("api.example", "ftp://h", "HTTP://h"):
        with pytest.raises(PullError, match="give http\\(s\\)://host:port"):
            Client(bad, None)


def test_manifests_that_are_not_manifests_are_named() -> None:
    for body in (b"not json", b"[]", b'{"no": "files"}', b'{"files": [{"bytes": 1}]}'):
        with pytest.raises(PullError, match="not a PriorForge manifest"):
            files_of(body)
    listed = files_of(b'{"files": [{"path": "a/b.zst", "bytes": "3", "sha256": "ab"}]}')
    assert [(f.path, f.bytes, f.sha256) for f in listed] == [("a/b.zst", 3, "ab")]


def make_copy(tmp_path: Path, files: dict[str, bytes]) -> Path:
    entries = []
    for path, data in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)
        entries.append(
            {"path": path, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        )
    (tmp_path / "manifest.json").write_text(json.dumps({"files": entries}))
    return tmp_path


def test_verify_checks_each_file_and_iter_files_lists_them_in_order(tmp_path: Path) -> None:
    dest = make_copy(tmp_path, {"d/b.zst": b"bbb", "d/a.zst": b"aa", "c.zst": b""})
    assert verify(dest) == (3, [])
    assert list(iter_files(dest)) == [dest / "d/b.zst", dest / "d/a.zst", dest / "c.zst"]
    (dest / "d/b.zst").write_bytes(b"bbbb")
    (dest / "d/a.zst").write_bytes(b"ab")
    (dest / "c.zst").unlink()
    checked, problems = verify(dest)
    assert checked == 3
    assert [(p.path, p.problem) for p in problems] == [
        ("d/b.zst", "4 bytes, the manifest says 3"),
        (
            "d/a.zst",
            f"sha256 {hashlib.sha256(b'ab').hexdigest()}, the manifest says "
            f"{hashlib.sha256(b'aa').hexdigest()}",
        ),
        ("c.zst", "missing"),
    ]


def test_verify_without_a_manifest_says_to_pull_first(tmp_path: Path) -> None:
    with pytest.raises(PullError, match=f"pull the version into {tmp_path} first"):
        verify(tmp_path)
