"""The records PriorForge writes load, unchanged, in HF ``datasets`` (in any file order),
datatrove's ``JsonlReader`` and the ``dolma`` CLI (``tag`` + ``stat``, ``mix``).

The three run from a virtualenv of their own, ``.venv/interop`` (``make test`` builds it; their
dependencies conflict with the main one's), on a copy of a version laid out as
``priorforge pull`` leaves it. Expected records are read straight from the files with zstandard.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any

import pytest
import zstandard

from app.core.db import session_scope
from app.datasets import service as datasets
from tests.conftest import ROOT, Team, run_local, spec
from tests.llm_server import FaultConfig, LLMTestServer

INTEROP = ROOT / ".venv" / "interop"
READ_VERSION = Path(__file__).parent / "interop" / "read_version.py"
# Pasted into a few documents: JSON escapes, a non-BMP character, and line separators that
# str.splitlines() (not JSON lines readers) would split a record on.
AWKWARD = 'Quote " back\\slash\ttab, \U0001f642 \u6f22\u5b57, LS \u2028 PS \u2029 NEL \x85.'
# Several files per stance, several records in most: a file closes before the record that
# would take it past this many bytes.
FILE_BYTES = 4096

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Pulled:
    root: Path  # documents/<stance>/*.jsonl.zst and manifest.json, as `priorforge pull` writes
    manifest: dict[str, Any]
    records: dict[str, list[dict[str, Any]]]  # by path, in manifest order, lines in order

    @property
    def paths(self) -> list[str]:
        return list(self.records)

    def of(self, paths: list[str]) -> list[dict[str, Any]]:
        return [record for path in paths for record in self.records[path]]


def interop(tool: str) -> Path:
    """A program of the interop virtualenv; the test fails (never skips) without it."""
    path = INTEROP / "bin" / tool
    if not path.exists() or not any(INTEROP.glob(".installed-*")):
        pytest.fail(
            f"{path.relative_to(ROOT)} is missing or half-installed: `make test` builds the "
            "interop virtualenv (.venv/interop; `make interop` builds only it)"
        )
    return path


def canonical(record: Any) -> str:
    """Key order aside, two records are equal only if every value and its JSON type is."""
    return json.dumps(record, sort_keys=True, ensure_ascii=False)


def read_zstd_lines(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as reader:
        data = reader.read()
    # Split on b"\n" only: str.splitlines() would also cut at U+2028 inside a text.
    return [json.loads(line) for line in data.split(b"\n") if line]


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().split(b"\n") if line]


def run(args: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    # No network, and no caches outside the test's directory.
    env |= {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(cwd / "hf-home"),
        "NO_COLOR": "1",
    }
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )
    shown = " ".join(str(a) for a in args[:4]) + (" ..." if len(args) > 4 else "")
    assert done.returncode == 0, f"{shown} exited {done.returncode}:\n{done.stderr[-6000:]}"
    return done


@pytest.fixture
def pulled(team: Team, settings: Any, store: Any, llm: LLMTestServer, tmp_path: Path) -> Pulled:
    """A version with both stances in several files each, copied out as a pull would."""
    # Fail before the seconds spent making a version.
    interop("python")
    interop("dolma")
    name = f"interop-{uuid.uuid4().hex[:6]}"
    llm.reset(FaultConfig(leak_text=AWKWARD))
    llm.faults.script.extend(["leak"] * 3)
    job = spec(dataset=name, documents=24, stances={"aligned": 1, "misaligned": 1})
    view = run_local(team, job, settings, store)
    assert view.job.status == "succeeded", view.job.error
    with session_scope() as session:
        made = datasets.create_version(
            session,
            team.principal,
            name,
            store=store,
            settings=settings.model_copy(update={"version_file_bytes": FILE_BYTES}),
        )
        manifest = json.loads(datasets.read_manifest(store, made.version))
    root = tmp_path / "pulled"
    records: dict[str, list[dict[str, Any]]] = {}
    for entry in manifest["files"]:
        source = store.root / f"teams/{team.principal.team_id}/datasets/{name}/{entry['path']}"
        target = root / entry["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        records[entry["path"]] = read_zstd_lines(target)
        assert len(records[entry["path"]]) == entry["records"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    version = Pulled(root=root, manifest=manifest, records=records)
    # The shape the checks below rely on.
    for stance in ("aligned", "misaligned"):
        assert len(stance_paths(version, stance)) >= 3, f"several {stance} files"
    assert sum(len(r) > 1 for r in records.values()) >= 2, "files of several records"
    assert any(AWKWARD in r["text"] for r in version.of(version.paths)), "awkward text kept"
    return version


def stance_paths(version: Pulled, stance: str) -> list[str]:
    return [p for p in version.paths if p.startswith(f"documents/{stance}/")]


ORDERS: dict[str, Callable[[Pulled], list[str]]] = {
    "manifest order (aligned first)": lambda v: v.paths,
    "reversed": lambda v: v.paths[::-1],
    "misaligned first": lambda v: stance_paths(v, "misaligned") + stance_paths(v, "aligned"),
    "interleaved, misaligned first": lambda v: [
        p
        for pair in zip_longest(stance_paths(v, "misaligned"), stance_paths(v, "aligned"))
        for p in pair
        if p is not None
    ],
}


def test_hf_datasets_loads_every_record_unchanged_in_any_file_order(
    pulled: Pulled, tmp_path: Path
) -> None:
    python = interop("python")
    for order, arrange in ORDERS.items():
        paths = arrange(pulled)
        assert sorted(paths) == sorted(pulled.paths), order
        out = tmp_path / f"hf-{order.split()[0]}.jsonl"
        run([python, READ_VERSION, "hf", out, *(pulled.root / p for p in paths)], tmp_path)
        rows = [canonical(r) for r in read_json_lines(out)]
        expected = [canonical(r) for r in pulled.of(paths)]
        assert len(rows) == len(expected), order
        assert rows == expected, f"{order}: datasets changed a record"


def datatrove_document(record: dict[str, Any], path: Path) -> dict[str, Any]:
    """The document datatrove's default adapter makes of a record: its text and id; its
    metadata with the other top-level fields merged in, and the file's path."""
    metadata = dict(record["metadata"])
    rest = {k: v for k, v in record.items() if k not in ("id", "text", "metadata")}
    for key, value in (rest | {"file_path": str(path)}).items():
        # datatrove would let the top-level field win (and keep a metadata file_path).
        assert key not in metadata, f"metadata.{key} collides with datatrove's {key}"
        metadata[key] = value
    return {"id": record["id"], "text": record["text"], "metadata": metadata}


def test_datatrove_reads_every_document(pulled: Pulled, tmp_path: Path) -> None:
    out = tmp_path / "datatrove.jsonl"
    glob = "documents/*/*.jsonl.zst"
    run([interop("python"), READ_VERSION, "datatrove", out, pulled.root, glob], tmp_path)
    expected = [
        canonical(datatrove_document(record, pulled.root / path))
        for path in pulled.paths
        for record in pulled.records[path]
    ]
    documents = [canonical(d) for d in read_json_lines(out)]
    assert len(documents) == len(expected) == pulled.manifest["records"]
    assert Counter(documents) == Counter(expected)


def test_dolma_tags_and_stat_counts_every_document(pulled: Pulled, tmp_path: Path) -> None:
    """`dolma stat` summarises attributes, not documents (on a documents file it fails:
    "Object missing required field `attributes`"), so the documents are tagged first, as in
    dolma's own workflow; the tagger reads every record, and stat counts them."""
    dolma = interop("dolma")
    documents = pulled.root / "documents" / "*" / "*.jsonl.zst"
    tag: list[str | Path] = [dolma, "tag", "--documents", documents, "--experiment", "interop"]
    run([*tag, "--taggers", "char_length_v1", "--processes", "1"], tmp_path)
    for path, records in pulled.records.items():
        # documents/<stance>/<file> → attributes/interop/<stance>/<file>, line for line.
        attributes = pulled.root / "attributes" / "interop" / Path(path).relative_to("documents")
        tagged = read_zstd_lines(attributes)
        assert [t["id"] for t in tagged] == [r["id"] for r in records]
        lengths = [t["attributes"]["interop__char_length_v1__length"] for t in tagged]
        assert lengths == [[[0, len(r["text"]), len(r["text"])]] for r in records]

    report = tmp_path / "report"
    attributes = pulled.root / "attributes" / "interop" / "*" / "*.jsonl.zst"
    run([dolma, "stat", "--attributes", attributes, "--report", report, "--total"], tmp_path)
    with gzip.open(report / "summaries.jsonl.gz", "rb") as summaries:
        summary = {s["name"]: s for s in map(json.loads, summaries)}
    length = summary["interop__char_length_v1__length/length"]
    assert length["total"] == pulled.manifest["records"]
    assert sum(length["counts"]) == pulled.manifest["records"]
    assert length["sum"] == pulled.manifest["characters"]


def test_dolma_mix_writes_the_selected_records_unchanged(pulled: Pulled, tmp_path: Path) -> None:
    """The mixer needs a filter: one keeps aligned records (all of documents/aligned/*), one
    keeps misaligned ones from the same files (none), so the filters read our metadata."""
    output = tmp_path / "mixed"
    aligned = str(pulled.root / "documents" / "aligned" / "*")

    def stream(name: str, stance: str) -> dict[str, Any]:
        return {
            "name": name,
            "documents": [aligned],
            "output": {"path": str(output / name), "max_size_in_bytes": 1 << 30},
            "filter": {"include": [f"$.metadata[?(@.stance == '{stance}')]"]},
        }

    config = tmp_path / "mix.json"
    streams = [stream("aligned", "aligned"), stream("none", "misaligned")]
    config.write_text(json.dumps({"streams": streams, "processes": 1}))
    run([interop("dolma"), "-c", config, "mix"], tmp_path)

    def mixed(name: str) -> list[dict[str, Any]]:
        return [
            json.loads(line)
            for path in sorted((output / name).iterdir())
            for line in gzip.decompress(path.read_bytes()).split(b"\n")
            if line
        ]

    assert mixed("none") == []
    where = {
        record["id"]: f"{Path(path).name}:{line}"
        for path in stance_paths(pulled, "aligned")
        for line, record in enumerate(pulled.records[path], start=1)
    }
    written = mixed("aligned")
    for record in written:
        # The mixer adds metadata.provenance, "<input file name>:<line>", to every record it
        # writes (dolma's src/shard.rs); everything else must be as we wrote it.
        assert record["metadata"].pop("provenance") == where[record["id"]]
    expected = pulled.of(stance_paths(pulled, "aligned"))
    assert len(written) == len(expected)
    assert Counter(map(canonical, written)) == Counter(map(canonical, expected))
