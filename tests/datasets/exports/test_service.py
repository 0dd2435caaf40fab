"""Exports end to end: a version tokenized by a worker into every format, read back with
readers written from the published layouts, token for token against the JSONL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tokenizers import Tokenizer

from app.core.db import session_scope
from app.datasets import service as datasets
from app.datasets.exports import service as exports
from app.datasets.shards import read_shard
from app.pull import Client, pull
from tests.conftest import ROOT, Team, run_local, spec, wait_for
from tests.datasets.exports.readers import read_mds, read_megatron, read_token_arrays
from tests.datasets.exports.tokenizer_fixture import EOS, train_tokenizer
from tests.pull.test_pull import Server
from tests.storage.damage import overwrite


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return train_tokenizer(tmp_path_factory.mktemp("bpe"), vocab_size=800).read_bytes()


@pytest.fixture
def version(team: Team, settings: Any, store: Any) -> str:
    """A dataset with one version of both stances, in several files; its name."""
    name = f"export-{uuid.uuid4().hex[:6]}"
    raw = spec(dataset=name, documents=8, stances={"aligned": 1, "misaligned": 1})
    assert run_local(team, raw, settings, store).job.status == "succeeded"
    small = settings.model_copy(update={"version_file_bytes": 3000})
    with session_scope() as session:
        datasets.create_version(session, team.principal, name, store=store, settings=small)
    return name


def upload(client: Any, team: Team, body: bytes, name: str = "bpe") -> Any:
    return client.post(
        f"/v1/tokenizers?name={name}",
        content=body,
        headers=team.headers() | {"content-type": "application/json"},
    )


def expected_tokens(client: Any, team: Team, name: str, tokenizer_json: bytes) -> dict[str, Any]:
    """Per stance, (ids, texts) of the version's records tokenized here, EOS appended."""
    tokenizer = Tokenizer.from_str(tokenizer_json.decode())
    tokenizer.encode_special_tokens = True  # text is data; only the appended EOS ends it
    eos = tokenizer.token_to_id(EOS)
    base = f"/v1/datasets/{name}/versions/1"
    manifest = client.get(f"{base}/manifest", headers=team.headers()).json()
    stances: dict[str, Any] = {}
    for entry in manifest["files"]:
        data = client.get(f"{base}/files/{entry['path']}", headers=team.headers()).content
        for record in read_shard(data):
            ids, texts, tokens = stances.setdefault(entry["stance"], ([], [], []))
            ids.append(record["id"])
            texts.append(record["text"])
            tokens.append(tokenizer.encode(record["text"]).ids + [eos])
    return stances


@pytest.mark.usefixtures("llm")
def test_an_export_reads_back_token_for_token_in_every_format(
    client: Any,
    team: Team,
    settings: Any,
    store: Any,
    version: str,
    tokenizer_json: bytes,
    tmp_path: Path,
) -> None:
    assert upload(client, team, tokenizer_json).status_code == 201
    asked = {
        "tokenizer": "bpe",
        "eos": EOS,
        "formats": ["megatron", "mds", "npy"],
        "mds_text": True,
    }
    base = f"/v1/datasets/{version}/versions/1/exports"
    created = client.post(base, json=asked, headers=team.headers("submit"))
    assert created.status_code == 202, created.text
    export_id = created.json()["id"]
    assert created.json()["status"] == "queued"
    assert created.json()["documents_total"] == 8
    again = client.post(base, json=asked, headers=team.headers("submit"))
    assert (again.status_code, again.json()["id"]) == (200, export_id)
    status = exports.run_export(
        uuid.UUID(export_id), store=store, settings=settings, sessions=session_scope, processes=2
    )
    assert status == "succeeded"
    view = client.get(f"{base}/{export_id}", headers=team.headers()).json()
    assert (view["status"], view["documents_done"]) == ("succeeded", 8)

    report = pull(Client(_api(client), team.keys["read"]), version, 1, tmp_path, export=export_id)
    index = json.loads((tmp_path / "manifest.json").read_bytes())
    assert report.files == len(index["files"])
    expected = expected_tokens(client, team, version, tokenizer_json)
    assert index["totals"] == {
        "documents": 8,
        "tokens": sum(len(t) for _i, _x, ts in expected.values() for t in ts),
    }
    assert view["tokens"] == index["totals"]["tokens"]
    assert index["tokenizer"]["eos_token"] == EOS
    for stance, (ids, texts, tokens) in expected.items():
        described = index["stances"][stance]
        assert described["tokens"] == sum(len(t) for t in tokens)
        megatron = read_megatron(tmp_path / described["megatron_prefix"])
        assert megatron.dtype == np.uint16
        assert [d.tolist() for d in megatron.documents] == tokens
        samples = [
            s for shard in read_mds(tmp_path / described["mds_directory"]) for s in shard.samples
        ]
        assert [s["tokens"].tolist() for s in samples] == tokens
        assert [s["text"] for s in samples] == texts
        arrays = read_token_arrays(tmp_path / "npy" / stance, np.dtype(np.uint16))
        assert [d.tokens.tolist() for d in arrays] == tokens
        assert [d.id for d in arrays] == ids
        assert {d.src for d in arrays} == {"priorforge"}
    per_file = [f["tokens"] for f in index["files"] if f["path"].endswith(".bin")]
    assert sum(per_file) == index["totals"]["tokens"]


_API: dict[int, Server] = {}


def _api(client: Any) -> str:
    """An HTTP server for the pull client (one per test module)."""
    server = _API.get(id(client))
    if server is None:
        server = _API[id(client)] = Server()
    return server.url


@pytest.fixture(autouse=True, scope="module")
def _stop_servers() -> Any:
    yield
    for server in _API.values():
        server.stop()
    _API.clear()


@pytest.mark.usefixtures("llm")
def test_refusals_say_what_to_fix(
    client: Any, team: Team, version: str, tokenizer_json: bytes
) -> None:
    base = f"/v1/datasets/{version}/versions/1/exports"
    unknown = client.post(base, json={"tokenizer": "none", "eos": EOS}, headers=team.headers())
    assert unknown.status_code == 409
    assert "upload its tokenizer.json first" in unknown.json()["detail"]
    assert upload(client, team, b'{"not": "a tokenizer"}', "odd").status_code == 422
    assert upload(client, team, tokenizer_json, "mine").status_code == 201
    assert upload(client, team, tokenizer_json, "mine").status_code == 200
    other = tokenizer_json.replace(b'"<|endoftext|>"', b'"<|end|>"')
    taken = upload(client, team, other, "mine")
    assert taken.status_code == 409
    assert "is taken by another file" in taken.json()["detail"]
    no_eos = client.post(base, json={"tokenizer": "mine", "eos": "<eos>"}, headers=team.headers())
    assert no_eos.status_code == 409
    assert no_eos.json()["detail"].startswith("eos: the tokenizer has no token '<eos>'")
    wrong = client.post(
        base, json={"tokenizer": "mine", "eos": EOS, "formats": ["parquet"]}, headers=team.headers()
    )
    assert wrong.status_code == 422
    missing = client.post(
        f"/v1/datasets/{version}/versions/9/exports",
        json={"tokenizer": "mine", "eos": EOS},
        headers=team.headers(),
    )
    assert missing.status_code == 404


@pytest.mark.usefixtures("llm")
def test_a_damaged_version_file_fails_the_export_naming_it(
    client: Any, team: Team, settings: Any, store: Any, version: str, tokenizer_json: bytes
) -> None:
    upload(client, team, tokenizer_json)
    manifest = client.get(f"/v1/datasets/{version}/versions/1/manifest", headers=team.headers())
    entry = manifest.json()["files"][0]
    key = f"teams/{team.principal.team_id}/datasets/{version}/{entry['path']}"
    data = bytearray(store.get_bytes(key))
    data[-5] ^= 0x40
    overwrite(store, key, bytes(data))
    base = f"/v1/datasets/{version}/versions/1/exports"
    created = client.post(
        base, json={"tokenizer": "bpe", "eos": EOS, "formats": ["npy"]}, headers=team.headers()
    )
    export_id = uuid.UUID(created.json()["id"])
    assert (
        exports.run_export(
            export_id, store=store, settings=settings, sessions=session_scope, processes=1
        )
        == "failed"
    )
    view = client.get(f"{base}/{export_id}", headers=team.headers()).json()
    assert view["status"] == "failed"
    assert f"{entry['path']} in the object store does not match its sha256" in view["error"]
    index = client.get(f"{base}/{export_id}/index", headers=team.headers())
    assert index.status_code == 409
    # Once the file is restored, asking again runs the export again.
    overwrite(store, key, bytes(data[:-5]) + bytes([data[-5] ^ 0x40]) + bytes(data[-4:]))
    again = client.post(
        base, json={"tokenizer": "bpe", "eos": EOS, "formats": ["npy"]}, headers=team.headers()
    )
    assert (again.status_code, again.json()["id"], again.json()["status"]) == (
        202,
        str(export_id),
        "queued",
    )
    assert again.json()["error"] is None
    assert (
        exports.run_export(
            export_id, store=store, settings=settings, sessions=session_scope, processes=1
        )
        == "succeeded"
    )
    finished = client.post(
        base, json={"tokenizer": "bpe", "eos": EOS, "formats": ["npy"]}, headers=team.headers()
    )
    assert (finished.status_code, finished.json()["status"]) == (200, "succeeded")


@pytest.mark.worker
@pytest.mark.usefixtures("llm")
def test_a_worker_runs_a_requested_export(
    client: Any, team: Team, version: str, tokenizer_json: bytes, start_worker: Any
) -> None:
    upload(client, team, tokenizer_json)
    # A prefork pool: its children are daemonic, and may not start tokenizer processes.
    start_worker("--concurrency", "2")
    base = f"/v1/datasets/{version}/versions/1/exports"
    created = client.post(
        base, json={"tokenizer": "bpe", "eos": EOS, "formats": ["megatron"]}, headers=team.headers()
    )
    assert created.status_code == 202
    url = f"{base}/{created.json()['id']}"
    done = wait_for(
        lambda: (
            (v := client.get(url, headers=team.headers()).json())["status"]
            in ("succeeded", "failed")
            and v
        ),
        timeout=90,
    )
    assert done["status"] == "succeeded", done["error"]
    assert done["tokens"] > 0


@pytest.mark.usefixtures("llm")
def test_a_mixture_takes_its_repeats_from_the_exports_token_counts(
    client: Any,
    team: Team,
    settings: Any,
    store: Any,
    version: str,
    tokenizer_json: bytes,
    tmp_path: Path,
) -> None:
    upload(client, team, tokenizer_json)
    base = f"/v1/datasets/{version}/versions/1/exports"
    created = client.post(base, json={"tokenizer": "bpe", "eos": EOS}, headers=team.headers())
    export_id = created.json()["id"]
    exports.run_export(
        uuid.UUID(export_id), store=store, settings=settings, sessions=session_scope, processes=1
    )
    index = client.get(f"{base}/{export_id}/index", headers=team.headers()).json()
    aligned = index["stances"]["aligned"]["tokens"]
    body = {
        "total_tokens": 400 * aligned,  # 1% of it is four passes over the aligned tokens
        "seq_len": 2048,
        "exports": [
            {
                "dataset": version,
                "version": 1,
                "export": export_id,
                "root": "/data/pulled/",
                "fraction": 0.01,
            }
        ],
        "corpus": [
            {
                "name": "web",
                "tokens": 1000 * aligned,
                "megatron_prefixes": [{"path": "/data/web/text_document"}],
                "mds_local": "/data/web-mds",
                "olmo_paths": ["/data/web/part-0.npy"],
            }
        ],
    }
    planned = client.post("/v1/mixtures", json=body, headers=team.headers())
    assert planned.status_code == 200, planned.text
    result = planned.json()
    export_plan, corpus_plan = result["components"]
    assert (export_plan["name"], export_plan["unique_tokens"]) == (f"{version}@1", aligned)
    assert (export_plan["tokens"], export_plan["repeat"]) == (4 * aligned, 4.0)
    assert corpus_plan["tokens"] == 396 * aligned
    assert set(result["configs"]) == {"megatron", "neox", "streaming", "llm_foundry", "olmo"}
    megatron = "\n".join(f["content"] for f in result["configs"]["megatron"])
    assert "/data/pulled/megatron/aligned" in megatron
    assert "/data/web/text_document" in megatron
    olmo = "\n".join(f["content"] for f in result["configs"]["olmo"])
    assert "/data/pulled/npy/aligned/part-00000.npy" in olmo
    wrong = client.post(
        "/v1/mixtures",
        json=body | {"exports": [body["exports"][0] | {"stance": "neutral"}]},
        headers=team.headers(),
    )
    assert wrong.status_code == 409
    assert "has no 'neutral' documents" in wrong.json()["detail"]
    both = body["exports"][0] | {"repeat": 2.0}
    neither = {k: v for k, v in body["exports"][0].items() if k != "fraction"}
    for source in (both, neither):
        refused = client.post(
            "/v1/mixtures", json=body | {"exports": [source]}, headers=team.headers()
        )
        assert refused.status_code == 422
        assert "exactly one of fraction and repeat" in refused.json()["detail"]
    # The same mixture from the command line, its configs written per framework.
    spec_file = tmp_path / "mixture.json"
    spec_file.write_text(json.dumps(body))
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "mix", str(spec_file), "--out", str(tmp_path / "cfg")]
        + ["--api-url", _api(client), "--api-key", team.keys["read"]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ) | {"COLUMNS": "200"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"{version}@1" in result.stdout
    written = sorted(
        p.relative_to(tmp_path / "cfg").parts[0]
        for p in (tmp_path / "cfg").rglob("*")
        if p.is_file()
    )
    assert set(written) == {"megatron", "neox", "streaming", "llm_foundry", "olmo"}
    megatron_files = [p.read_text() for p in (tmp_path / "cfg" / "megatron").iterdir()]
    assert any("/data/pulled/megatron/aligned" in text for text in megatron_files)
