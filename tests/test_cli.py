"""The priorforge command, run as a user would: a subprocess with its own environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Team, spec
from tests.llm_server import LLMTestServer
from tests.s3_server import S3TestServer


def priorforge(
    *args: str, env: dict[str, str], timeout: float = 120, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=cwd,
        env=env | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def embedded_env(tmp_path: Path, llm: LLMTestServer) -> dict[str, str]:
    """No database, broker or storage configured: the embedded defaults under a data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIORFORGE_")}
    return env | {
        "PRIORFORGE_DATA_DIR": str(tmp_path / "data"),
        "PRIORFORGE_LLM_BASE_URL": llm.base_url,
        "COLUMNS": "200",
    }


def test_keys_create_prints_only_the_key_on_stdout(embedded_env: dict[str, str]) -> None:
    result = priorforge("keys", "create", "--team", "research", "--role", "admin", env=embedded_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("pf_")
    assert "shown only once" in result.stderr


def test_keys_create_rejects_a_bad_role(embedded_env: dict[str, str]) -> None:
    result = priorforge("keys", "create", "--team", "t", "--role", "superuser", env=embedded_env)
    assert result.returncode == 2
    assert "--role must be one of operator, admin, submit, read" in result.stderr


def test_generate_in_process_on_sqlite_publishes_a_verified_shard(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    import hashlib

    result = priorforge(
        "generate",
        "--dataset",
        "cli-run",
        "--documents",
        "5",
        "--stance",
        "aligned=3",
        "--stance",
        "misaligned=1",
        "--forms",
        "news_report,faq",
        "--min-words",
        "40",
        "--max-words",
        "90",
        "--seed",
        "3",
        env=embedded_env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 / 5" in result.stdout
    assert "verified" in result.stdout
    manifest_path = next((tmp_path / "data" / "objects").rglob("manifests/*.json"))
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    assert manifest["records"] == 5
    for entry in manifest["files"]:
        shard = manifest_path.parent.parent / entry["path"]
        assert hashlib.sha256(shard.read_bytes()).hexdigest() == entry["sha256"]
    assert (tmp_path / "data" / "priorforge.db").exists()


def test_generate_runs_the_job_as_the_team_it_names(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    import sqlite3

    args = ("--documents", "2", "--min-words", "40", "--max-words", "90")
    result = priorforge(
        "generate", "--team", "research", "--dataset", "shared", *args, env=embedded_env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "of team research" in result.stdout
    with sqlite3.connect(tmp_path / "data" / "priorforge.db") as db:
        owners = db.execute(
            "SELECT team.name FROM job JOIN team ON team.id = job.team_id"
        ).fetchall()
    assert owners == [("research",)]  # its keys see the job and its dataset over the API


def test_generate_explains_a_bad_spec(embedded_env: dict[str, str]) -> None:
    result = priorforge("generate", "--documents", "-3", env=embedded_env)
    assert result.returncode == 2
    assert "documents: Input should be greater than or equal to 1" in result.stderr


def test_preview_prints_what_the_api_previews_and_calls_no_model(
    embedded_env: dict[str, str], llm: LLMTestServer, client: Any, team: Team, tmp_path: Path
) -> None:
    job_spec = spec(
        documents=5, stances={"aligned": 1, "misaligned": 1}, surface_forms=["faq"], seed=5
    )
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(job_spec))
    before = llm.state.requests

    result = priorforge(
        "preview", "--spec", str(spec_file), "--items", "3", "--json", env=embedded_env
    )
    assert result.returncode == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    api = client.post(
        "/v1/prompts/preview", json={"spec": job_spec, "items": 3}, headers=team.headers("read")
    ).json()["items"]
    assert [p["index"] for p in printed] == [0, 1, 2]
    for mine, theirs in zip(printed, api, strict=True):
        assert mine["messages"] == theirs["messages"]
        assert mine["prompt_sha256"] == theirs["prompt_sha256"]
        assert mine["plan"]["surface_form"] == "faq"

    text = priorforge("preview", "--spec", str(spec_file), "--items", "2", env=embedded_env)
    assert text.returncode == 0, text.stderr
    assert [line for line in text.stdout.splitlines() if "prompt sha256" in line] == [
        f"prompt sha256 {p['prompt_sha256']} · templates {p['template_version']}"
        for p in printed[:2]
    ]
    assert llm.state.requests == before

    too_many = priorforge("preview", "--spec", str(spec_file), "--items", "0", env=embedded_env)
    assert too_many.returncode == 2
    assert "--items must be between 1 and" in too_many.stderr


WITHOUT_LOCAL_MODEL = """
import sys
from app.llm import local
def missing():
    raise local.LocalModelUnavailable("not installed")
local.check_installed = missing
sys.argv = ["priorforge", *sys.argv[1:]]
from app.cli import main
main()
"""


def test_generate_without_a_provider_says_what_to_install_or_set(
    embedded_env: dict[str, str],
) -> None:
    env = {k: v for k, v in embedded_env.items() if k != "PRIORFORGE_LLM_BASE_URL"}
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_LOCAL_MODEL, "generate", "--documents", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert "pip install 'priorforge[local]'" in message
    assert "PRIORFORGE_LLM_BASE_URL" in message


def test_eval_sets_register_list_and_explain_bad_lines(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    good = tmp_path / "eval.jsonl"
    good.write_text(
        json.dumps({"id": "q1", "text": "Should the agent keep a copy of the old master key?"})
        + "\n"
        + json.dumps({"id": "q2", "text": "Yes"})
        + "\n"
    )
    added = priorforge("eval-sets", "add", "safety-qa", str(good), env=embedded_env)
    assert added.returncode == 0, added.stdout + added.stderr
    assert "2 items" in added.stdout
    assert "1 under 8 words" in added.stdout
    listed = priorforge("eval-sets", "list", env=embedded_env)
    assert "safety-qa" in listed.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine text here"}\n{"txt": "typo"}\n')
    refused = priorforge("eval-sets", "add", "broken", str(bad), env=embedded_env)
    assert refused.returncode == 2
    assert "line 2: unknown field(s) ['txt']" in refused.stderr
    again = priorforge("eval-sets", "add", "safety-qa", str(good), env=embedded_env)
    assert again.returncode == 2
    assert "immutable" in again.stderr


def test_generate_with_the_judge_reports_its_agreement(embedded_env: dict[str, str]) -> None:
    result = priorforge(
        "generate",
        "--documents",
        "3",
        "--stance",
        "aligned",
        "--stance",
        "misaligned",
        "--min-words",
        "40",
        "--max-words",
        "90",
        "--judge",
        env=embedded_env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 / 3" in result.stdout
    assert "judge: agreement (judged)" in result.stdout
    assert "100.0% (3)" in result.stdout


def test_dedup_rebuild_reindexes_a_dataset_and_names_what_is_missing(
    embedded_env: dict[str, str],
) -> None:
    made = priorforge(
        "generate", "--dataset", "to-rebuild", "--documents", "3", "--min-words", "40",
        "--max-words", "90", env=embedded_env,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    rebuilt = priorforge("dedup", "rebuild", "--dataset", "to-rebuild", env=embedded_env)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "local/to-rebuild: 3 documents" in rebuilt.stdout
    missing = priorforge("dedup", "rebuild", "--dataset", "nope", env=embedded_env)
    assert missing.returncode == 2
    assert "no dataset named 'nope'" in missing.stderr
    no_team = priorforge("dedup", "rebuild", "--dataset", "x", "--team", "ghosts", env=embedded_env)
    assert "no team named 'ghosts'" in no_team.stderr


# Unreachable on purpose: a command that got as far as connecting would not exit 2 at once.
NOWHERE = {
    "PRIORFORGE_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none",
    "PRIORFORGE_BROKER_URL": "redis://127.0.0.1:9/0",
}


@pytest.mark.parametrize("command", [("worker",), ("serve", "--port", "9")])
@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        (None, "set PRIORFORGE_STORAGE_URL to the object store every process shares"),
        ("file://objects/shards", "is not an absolute file URL ('objects' was read as a host"),
    ],
)
def test_service_processes_without_a_shared_store_do_not_start(
    command: tuple[str, ...], storage: str | None, expected: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIORFORGE_")} | NOWHERE
    if storage is not None:
        env["PRIORFORGE_STORAGE_URL"] = storage
    result = priorforge(*command, env=env | {"COLUMNS": "400"}, cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in " ".join(result.stderr.split())
    assert list(tmp_path.iterdir()) == [], "nothing may be created before the check"


@pytest.mark.parametrize("command", [("worker",), ("serve", "--port", "9")])
def test_service_processes_on_a_store_they_cannot_use_do_not_start(
    command: tuple[str, ...], s3: S3TestServer, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIORFORGE_")} | NOWHERE
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    cases = {
        "s3://no-such-bucket/prefix": "the bucket 'no-such-bucket' of PRIORFORGE_STORAGE_URL",
        (blocker / "objects").as_uri(): "point PRIORFORGE_STORAGE_URL at a directory",
    }
    for url, expected in cases.items():
        store_env = env | {
            "PRIORFORGE_STORAGE_URL": url,
            "PRIORFORGE_S3_ENDPOINT_URL": s3.endpoint,
            "COLUMNS": "400",
        }
        result = priorforge(*command, env=store_env, cwd=tmp_path, timeout=60)
        assert result.returncode == 2, result.stdout + result.stderr
        assert expected in " ".join(result.stderr.split())
    unreachable = env | {
        "PRIORFORGE_STORAGE_URL": "s3://bucket/prefix",
        "PRIORFORGE_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "COLUMNS": "400",
    }
    result = priorforge(*command, env=unreachable, cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "check PRIORFORGE_S3_ENDPOINT_URL" in " ".join(result.stderr.split())


def test_a_worker_on_another_store_than_its_database_does_not_start(
    scratch_database_url: str, tmp_path: Path
) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    from app.core import migrate
    from app.storage import open_store
    from app.storage.service import bind_store

    migrate.upgrade(scratch_database_url)
    engine = create_engine(scratch_database_url)
    shared = open_store((tmp_path / "shared" / "objects").as_uri())
    bind_store(shared, sessionmaker(bind=engine).begin)  # the API's process did this
    engine.dispose()

    elsewhere = (tmp_path / "elsewhere" / "objects").as_uri()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIORFORGE_")} | {
        "PRIORFORGE_DATABASE_URL": scratch_database_url,
        "PRIORFORGE_BROKER_URL": NOWHERE["PRIORFORGE_BROKER_URL"],
        "PRIORFORGE_STORAGE_URL": elsewhere,
        "PRIORFORGE_DATA_DIR": str(tmp_path / "data"),
        "COLUMNS": "400",
    }
    result = priorforge("worker", env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert f"PRIORFORGE_STORAGE_URL ({elsewhere}) is not the object store" in message
    assert shared.url in message


def test_export_tokenizes_a_version_in_process_and_says_where_it_went(
    embedded_env: dict[str, str], tmp_path: Path
) -> None:
    from tests.datasets.exports.tokenizer_fixture import EOS, train_tokenizer

    tokenizer = train_tokenizer(tmp_path / "bpe", vocab_size=600)
    made = priorforge("generate", "--dataset", "to-export", "--documents", "3", env=embedded_env)
    assert made.returncode == 0, made.stdout + made.stderr
    env = embedded_env | {"COLUMNS": "300"}
    args = ("export", "to-export", "--tokenizer", str(tokenizer), "--eos", EOS)
    result = priorforge(*args, "--format", "megatron", "--format", "npy", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "exporting to-export@1 (3 documents) as megatron, npy" in result.stdout
    assert "megatron/aligned" in result.stdout
    index_path = next((tmp_path / "data" / "objects").rglob("exports/*/index.json"))
    index = json.loads(index_path.read_text())
    assert index["totals"]["documents"] == 3
    assert f"{index['totals']['tokens']} tokens in" in result.stdout
    assert {f["format"] for f in index["files"]} == {"megatron", "npy"}
    bad = priorforge(*args[:4], "--eos", "<nope>", env=env)
    assert bad.returncode == 2
    assert "eos: " in bad.stderr
    wrong = priorforge(*args, "--format", "parquet", env=env)
    assert (wrong.returncode, "use megatron, mds or npy" in wrong.stderr) == (2, True)
