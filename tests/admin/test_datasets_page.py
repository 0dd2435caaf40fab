"""A dataset's page: what a version adds to the one before, and its exports, requested
from the page and followed to the end."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.db import session_scope
from app.datasets import service as datasets
from app.datasets.exports import service as exports
from tests.admin.test_session import audit_actions, csrf_of, sign_in
from tests.conftest import Team, run_local, spec
from tests.datasets.exports.tokenizer_fixture import EOS, train_tokenizer


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return train_tokenizer(tmp_path_factory.mktemp("bpe"), vocab_size=800).read_bytes()


def test_a_version_shows_what_it_adds_and_exports_run_from_the_page(
    browser: TestClient, team: Team, settings: Any, store: Any, tokenizer_json: bytes
) -> None:
    name = f"page-{uuid.uuid4().hex[:6]}"
    for seed, documents in ((1, 4), (2, 3)):
        raw = spec(dataset=name, documents=documents, seed=seed)
        assert run_local(team, raw, settings, store).job.status == "succeeded"
        with session_scope() as session:
            datasets.create_version(session, team.principal, name, store=store, settings=settings)
    with TestClient(browser.app) as api:
        uploaded = api.post(
            "/v1/tokenizers?name=bpe",
            content=tokenizer_json,
            headers=team.headers() | {"content-type": "application/json"},
        )
        assert uploaded.status_code == 201, uploaded.text

    sign_in(browser, team.keys["admin"])
    page = browser.get(f"/admin/datasets/{name}").text
    diff = re.search(r'data-testid="diff">(.*?)</ul>', page, re.S)
    assert diff is not None
    added = re.findall(r"([\d,]+) (aligned|misaligned) documents \(positions", diff.group(1))
    assert sum(int(count) for count, _stance in added) == 3  # the second job's
    assert "Not exported yet." in page

    token = csrf_of(page)
    url = f"/admin/datasets/{name}/versions/2/exports"
    none = browser.post(url, data={"csrf_token": token, "tokenizer": "bpe", "eos": EOS})
    assert none.status_code == 422
    assert "tick at least one format" in none.text
    form = {"csrf_token": token, "tokenizer": "bpe", "eos": EOS, "format_megatron": "1"}
    asked = browser.post(url, data=form)
    assert asked.status_code == 303
    queued = browser.get(asked.headers["location"]).text
    row = re.search(r'data-testid="exports">.*?<tbody>(.*?)</tbody>', queued, re.S)
    assert row is not None
    assert "status-queued" in row.group(1)
    assert "0 of 7" in row.group(1)
    polled = f'hx-get="/admin/datasets/{name}/versions/2/exports"'
    assert polled in queued  # the exports refresh themselves while one runs

    with session_scope() as session:
        (export,) = exports.list_exports(session, team.principal, name, 2)
        export_id = export.id
    mixture = f"/admin/mixtures?dataset={name}&version=2&export="
    assert browser.get(f"{mixture}{export_id}").status_code == 409  # not finished yet
    assert browser.get(f"{mixture}{uuid.uuid4()}").status_code == 404
    exports.run_export(export_id, store=store, settings=settings, sessions=session_scope)
    done = browser.get(f"/admin/datasets/{name}?version=2").text
    row = re.search(r'data-testid="exports">.*?<tbody>(.*?)</tbody>', done, re.S)
    assert row is not None
    assert "status-succeeded" in row.group(1)
    assert "7 of 7" in row.group(1)
    assert polled not in done
    part = browser.get(f"/admin/datasets/{name}/versions/2/exports").text
    assert part.startswith('<div id="exports"')
    assert "status-succeeded" in part
    # Asked again, it is the same export.
    assert browser.post(url, data=form).status_code == 303
    assert audit_actions(team)[-2:] == ["request_export", "export_exists"]
    # A succeeded export plans into a mixture with the team's own corpus.
    link = re.search(r'href="(/admin/mixtures\?[^"]+)">plan a mixture', done)
    assert link is not None
    url = link.group(1).replace("&amp;", "&")
    assert "The plan" not in browser.get(url).text  # the form first
    with session_scope() as session:
        tokens = exports.find_export(session, export_id).tokens
    plan_url = (
        f"{url}&total_tokens={tokens * 100}&seq_len=128&fraction=0.02"
        "&corpus_name=web&corpus_tokens=1000000000&corpus_prefix=/data/web_text_document"
    )
    planned = browser.get(plan_url)
    assert planned.status_code == 200, planned.text
    parts = re.search(r'data-testid="components">.*?<tbody>(.*?)</tbody>', planned.text, re.S)
    assert parts is not None
    kinds = re.findall(r"<tr><td>([^<]+)</td><td>(export|corpus)</td>", parts.group(1))
    assert kinds == [(f"{name}@2", "export"), ("web", "corpus")]
    assert 'data-testid="summary"' in planned.text
    frameworks = re.findall(r"<details><summary>\s*([a-z_]+):", planned.text)
    assert "megatron" in frameworks, frameworks
    refused = browser.get(f"{url}&total_tokens=1000&fraction=2")
    assert refused.status_code == 422
    half = browser.get(f"{url}&total_tokens=1000&corpus_name=web")
    assert half.status_code == 422
    assert "corpus" in half.text
