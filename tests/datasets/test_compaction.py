"""Snapshots compact a dataset's documents into version files near a target size: many small
jobs make few files, full files are kept from version to version, and a snapshot stopped
before its manifest leaves no version."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import zstandard
from sqlalchemy import select

from app.core.db import session_scope
from app.datasets import service as datasets
from app.datasets.compaction import pack
from app.datasets.shards import json_line
from app.models import Document
from app.storage import put_content_addressed as real_put
from tests.conftest import Team, run_local, spec


def snapshot(team: Team, name: str, store: Any, settings: Any) -> Any:
    with session_scope() as session:
        made = datasets.create_version(
            session, team.principal, name, store=store, settings=settings
        )
        return made.version.number, made.created


def manifest_of(team: Team, name: str, store: Any, number: int) -> dict[str, Any]:
    with session_scope() as session:
        _dataset, version = datasets.get_version(session, team.principal, name, number)
        return dict(json.loads(datasets.read_manifest(store, version)))


@pytest.mark.usefixtures("llm")
def test_fifty_small_jobs_make_files_near_the_target_not_fifty(
    team: Team, settings: Any, store: Any
) -> None:
    name = f"many-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    for seed in range(50):
        view = run_local(team, spec(dataset=name, documents=1, seed=seed), settings, store)
        assert view.job.status == "succeeded", view.job.error
    assert time.monotonic() - started < 240
    target = 16 * 1024
    assert snapshot(team, name, store, settings.model_copy(update={"version_file_bytes": target}))
    manifest = manifest_of(team, name, store, 1)
    files = manifest["files"]
    assert manifest["records"] == 50
    total = sum(f["uncompressed_bytes"] for f in files)
    assert len(files) == -(-total // target) or len(files) == -(-total // target) + 1
    assert len(files) < 10
    for entry in files[:-1]:  # every file but the last is filled to near the target
        assert target * 0.8 < entry["uncompressed_bytes"] <= target
    assert [f["first_position"] for f in files] == sorted(f["first_position"] for f in files)


@pytest.mark.usefixtures("llm")
def test_a_new_version_keeps_full_files_and_repacks_only_the_unfilled_last(
    client: Any, team: Team, settings: Any, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"grow-{uuid.uuid4().hex[:6]}"
    first_job = run_local(team, spec(dataset=name, documents=5), settings, store)
    with session_scope() as session:
        sizes = [
            len(text or "")
            for text in session.scalars(
                select(Document.text).where(Document.job_id == first_job.job.id)
            )
        ]
    # About two documents a file.
    small = settings.model_copy(update={"version_file_bytes": 2 * max(sizes) + 1500})
    assert snapshot(team, name, store, small) == (1, True)
    first = manifest_of(team, name, store, 1)["files"]
    v1_bytes = {
        f["path"]: client.get(
            f"/v1/datasets/{name}/versions/1/files/{f['path']}", headers=team.headers()
        ).content
        for f in first
    }
    more = run_local(team, spec(dataset=name, documents=3, seed=5), settings, store)
    assert more.job.status == "succeeded", more.job.error
    uploaded: list[str] = []

    def spy(store_: Any, key: str, source: Any) -> Any:
        uploaded.append(key.rsplit("/", 1)[-1])
        return real_put(store_, key, source)

    monkeypatch.setattr(datasets, "put_content_addressed", spy)
    assert snapshot(team, name, store, small) == (2, True)
    second = manifest_of(team, name, store, 2)["files"]
    full = [f for f in first if f["uncompressed_bytes"] > small.version_file_bytes // 2]
    assert full, "some files of version 1 were full"
    kept = [f for f in second if f in first]
    assert kept == first[:-1], "every file but the unfilled last is kept as it was"
    assert second[-1]["first_position"] + second[-1]["records"] == 8
    repacked = [f for f in second if f not in first]
    assert repacked[0]["first_position"] == first[-1]["first_position"]
    # Only the re-packed files and the manifest were written: kept files were not rewritten.
    assert sorted(uploaded[:-1]) == sorted(f["path"].rsplit("/", 1)[-1] for f in repacked)
    assert uploaded[-1].endswith(".json")
    # Version 1 is untouched: its manifest and files serve the same bytes.
    for path, data in v1_bytes.items():
        again = client.get(f"/v1/datasets/{name}/versions/1/files/{path}", headers=team.headers())
        assert again.content == data
    assert placed_positions(team, name) == {"aligned": list(range(8))}
    diff = client.get(f"/v1/datasets/{name}/versions/2/diff?since=1", headers=team.headers())
    assert diff.json() == {
        "dataset": name,
        "since": 1,
        "version": 2,
        "files_added": sorted(f["path"] for f in repacked),
        "files_removed": [first[-1]["path"]],
        "documents_added": {"aligned": {"start": 5, "end": 8, "documents": 3}},
        "documents_removed": {},
    }
    back = client.get(f"/v1/datasets/{name}/versions/1/diff?since=2", headers=team.headers())
    assert back.json()["documents_removed"] == {"aligned": {"start": 5, "end": 8, "documents": 3}}
    assert back.json()["files_removed"] == sorted(f["path"] for f in repacked)


def placed_positions(team: Team, name: str) -> dict[str, list[int | None]]:
    """The dataset's accepted documents' positions, per stance."""
    with session_scope() as session:
        dataset = datasets.find_dataset(session, team.principal.team_id, name)
        assert dataset is not None
        rows = session.execute(
            select(Document.stance, Document.position)
            .where(Document.dataset_id == dataset.id, Document.status == "accepted")
            .order_by(Document.position)
        ).all()
    positions: dict[str, list[int | None]] = {}
    for stance, position in rows:
        positions.setdefault(stance, []).append(position)
    return positions


@pytest.mark.usefixtures("llm")
def test_a_snapshot_stopped_before_its_manifest_leaves_no_version(
    client: Any, team: Team, settings: Any, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"stopped-{uuid.uuid4().hex[:6]}"
    run_local(team, spec(dataset=name, documents=3), settings, store)
    written: list[str] = []

    def stop_at_the_manifest(store_: Any, key: str, source: Any) -> Any:
        if "/manifests/" in key:
            raise SystemExit("killed between the files and the manifest")
        written.append(key)
        return real_put(store_, key, source)

    monkeypatch.setattr(datasets, "put_content_addressed", stop_at_the_manifest)
    with pytest.raises(SystemExit), session_scope() as session:
        datasets.create_version(session, team.principal, name, store=store, settings=settings)
    assert written, "the files went up first"
    assert client.get(f"/v1/datasets/{name}/versions", headers=team.headers()).json() == []
    assert placed_positions(team, name) == {"aligned": [None, None, None]}
    monkeypatch.setattr(datasets, "put_content_addressed", real_put)
    assert snapshot(team, name, store, settings) == (1, True)
    files = manifest_of(team, name, store, 1)["files"]
    prefix = f"teams/{team.principal.team_id}/datasets/{name}/"
    assert sorted(prefix + f["path"] for f in files) == sorted(written)


def test_pack_cuts_before_the_target_and_keeps_positions_contiguous(tmp_path: Path) -> None:
    records = [(p, {"id": str(p), "text": "x" * (100 + p)}) for p in range(40)]
    files = list(pack(records, stance="aligned", target_bytes=1000, directory=tmp_path))
    assert all(f.uncompressed_bytes <= 1000 for f in files)
    assert [f.first for f in files] == [0] + [f.end for f in files[:-1]]
    assert files[-1].end == 40
    assert sum(f.characters for f in files) == sum(100 + p for p in range(40))
    again = list(pack(records, stance="aligned", target_bytes=1000, directory=tmp_path / ""))
    assert [f.sha256 for f in again] == [f.sha256 for f in files], "same input, same bytes"
    big = list(pack([(0, {"text": "y" * 5000})], stance="x", target_bytes=1000, directory=tmp_path))
    assert [f.records for f in big] == [1], "a record larger than the target is a file alone"
    with pytest.raises(ValueError, match="positions must be contiguous: 2 follows 0"):
        list(
            pack(
                [(0, {"text": ""}), (2, {"text": ""})],
                stance="x",
                target_bytes=99,
                directory=tmp_path,
            )
        )


def test_a_packed_file_is_one_checked_frame_of_utf8_json_lines_stating_its_size(
    tmp_path: Path,
) -> None:
    records = [(p, {"id": str(p), "text": f"café {p} – naïve"}) for p in range(3)]
    (packed,) = pack(records, stance="aligned", target_bytes=10_000, directory=tmp_path)
    assert packed.path.name == "aligned-0000000000.jsonl.zst"
    data = packed.path.read_bytes()
    frame = zstandard.get_frame_parameters(data)
    assert frame.content_size == packed.uncompressed_bytes
    assert frame.has_checksum
    raw = zstandard.ZstdDecompressor().decompress(data)
    assert raw.endswith(b"\n")
    assert [json.loads(line) for line in raw.split(b"\n")[:-1]] == [r for _p, r in records]
    assert "café".encode() in raw  # UTF-8 as written, not \u escapes
    assert len(raw) == packed.uncompressed_bytes
    assert hashlib.sha256(data).hexdigest() == packed.sha256


def test_a_file_filled_exactly_to_the_target_takes_the_record_that_fills_it(
    tmp_path: Path,
) -> None:
    records = [(p, {"text": "x" * 100}) for p in range(4)]
    line = len(json_line(records[0][1]))
    files = list(pack(records, stance="s", target_bytes=2 * line, directory=tmp_path))
    assert [f.records for f in files] == [2, 2]
    assert [f.uncompressed_bytes for f in files] == [2 * line, 2 * line]
