"""MDS writer, read back by an independent reader of MosaicML's published shard layout."""

from __future__ import annotations

import hashlib
import json
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from app.datasets.exports.base import ExportedFile
from app.datasets.exports.mds import MDSWriter
from tests.datasets.exports.readers import FormatError, read_mds, verify_files

SIXTY_FOUR_MIB = 64 << 20


def _write(
    directory: Path,
    documents: list[list[int]],
    vocab_size: int,
    texts: list[str] | None = None,
    **options: int,
) -> list[ExportedFile]:
    with MDSWriter(directory, vocab_size, with_text=texts is not None, **options) as writer:
        for number, document in enumerate(documents):
            writer.add_document(document, None if texts is None else texts[number])
        return writer.close()


def _samples(directory: Path) -> list[dict[str, Any]]:
    return [sample for shard in read_mds(directory) for sample in shard.samples]


@st.composite
def _corpora(draw: st.DrawFn) -> tuple[int, list[list[int]], list[str] | None]:
    vocab_size = draw(st.sampled_from([2, 50_000, 65536, 65537, 2**31]))
    token = st.integers(min_value=0, max_value=vocab_size - 1)
    documents = draw(st.lists(st.lists(token, min_size=1, max_size=300), min_size=1, max_size=20))
    with_text = draw(st.booleans())
    texts = [draw(st.text(max_size=30)) for _ in documents] if with_text else None
    return vocab_size, documents, texts


@settings(max_examples=60, deadline=None)
@given(_corpora(), st.sampled_from([1700, 4000, 63 << 20]))
def test_documents_round_trip(
    corpus: tuple[int, list[list[int]], list[str] | None], size_limit: int
) -> None:
    vocab_size, documents, texts = corpus
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = _write(root, documents, vocab_size, texts, size_limit=size_limit)

        samples = _samples(root)
        assert [sample["tokens"].tolist() for sample in samples] == documents
        if texts is None:
            assert all(set(sample) == {"tokens"} for sample in samples)
        else:
            assert [sample["text"] for sample in samples] == texts
        verify_files(root, files)
        assert sum(file.tokens for file in files) == sum(map(len, documents))
        assert sum(file.documents for file in files) == len(documents)
        shards = read_mds(root)
        assert all(len(shard.raw) <= size_limit for shard in shards)
        assert [file.path for file in files] == [
            *(shard.entry["zip_data"]["basename"] for shard in shards),
            "index.json",
        ]


def test_sample_bytes_follow_the_published_layout(tmp_path: Path) -> None:
    _write(tmp_path, [[1, 2, 3], list(range(256))], vocab_size=1000, texts=["hi", ""])

    [shard] = read_mds(tmp_path)
    config = json.dumps(
        {
            "column_encodings": ["str", "ndarray:uint16"],
            "column_names": ["text", "tokens"],
            "column_sizes": [None, None],
            "compression": "zstd:3",
            "format": "mds",
            "hashes": ["sha256"],
            "size_limit": 63 << 20,
            "version": 2,
        },
        sort_keys=True,
    ).encode()
    # Sizes of the two variable columns (text, then tokens), then their bytes. The tokens are
    # one byte (ndim 1 << 2 | shape dtype), the shape in that dtype, then the values.
    first = (
        struct.pack("<2I", 2, 1 + 1 + 6) + b"hi" + bytes([4 | 0, 3]) + struct.pack("<3H", 1, 2, 3)
    )
    second = (
        struct.pack("<2I", 0, 1 + 2 + 512)
        + bytes([4 | 1])
        + struct.pack("<H", 256)
        + struct.pack("<256H", *range(256))
    )
    start = 4 + 3 * 4 + len(config)
    header = struct.pack("<4I", 2, start, start + len(first), start + len(first) + len(second))
    assert shard.raw == header + config + first + second


def test_only_the_compressed_shard_is_kept(tmp_path: Path) -> None:
    _write(tmp_path, [[1, 2, 3]], vocab_size=100)

    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "index.json",
        "shard.00000.mds.zstd",
    ]
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["shards"][0]["raw_data"]["basename"] == "shard.00000.mds"
    assert index["shards"][0]["compression"] == "zstd:3"


@pytest.mark.parametrize(
    ("vocab_size", "encoding"),
    [(65536, "ndarray:uint16"), (65537, "ndarray:int32")],
)
def test_token_encoding_is_the_narrowest_that_holds_the_vocabulary(
    tmp_path: Path, vocab_size: int, encoding: str
) -> None:
    _write(tmp_path, [[0, 65535, vocab_size - 1]], vocab_size)

    [shard] = read_mds(tmp_path)
    assert shard.entry["column_encodings"] == [encoding]
    assert shard.samples[0]["tokens"].tolist() == [0, 65535, vocab_size - 1]


def test_shards_split_at_the_size_limit_in_order(tmp_path: Path) -> None:
    documents = [[n % 100] * 50 for n in range(200)]
    files = _write(tmp_path, documents, vocab_size=100, size_limit=4000)

    shards = read_mds(tmp_path)
    assert len(shards) > 5
    assert [shard.entry["zip_data"]["basename"] for shard in shards] == [
        f"shard.{n:05}.mds.zstd" for n in range(len(shards))
    ]
    assert all(len(shard.raw) <= 4000 for shard in shards)
    # Each shard is full: the next document would not have fit.
    sample_bytes = len(shards[0].raw) - struct.unpack_from("<I", shards[0].raw, 4)[0]
    per_sample = sample_bytes // shards[0].entry["samples"] + 4
    assert all(len(shard.raw) + per_sample > 4000 for shard in shards[:-1])
    assert [s["tokens"].tolist() for s in _samples(tmp_path)] == documents
    assert [file.documents for file in files[:-1]] == [s.entry["samples"] for s in shards]


def test_a_shard_fills_to_exactly_the_size_limit(tmp_path: Path) -> None:
    documents = [[7] * 10] * 3
    # Probe with a limit of the same digit count, so the embedded config has the same length.
    _write(tmp_path / "probe", documents, vocab_size=100, size_limit=999)
    [probe] = read_mds(tmp_path / "probe")
    exact = len(probe.raw)
    assert 100 <= exact <= 999

    _write(tmp_path / "exact", documents, vocab_size=100, size_limit=exact)
    _write(tmp_path / "short", documents, vocab_size=100, size_limit=exact - 1)

    assert [s.entry["samples"] for s in read_mds(tmp_path / "exact")] == [3]
    assert [s.entry["samples"] for s in read_mds(tmp_path / "short")] == [2, 1]


def test_default_shards_stay_under_64_mib_even_incompressible(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    # Random ids over the whole uint16 range do not compress: the worst case for the limit.
    documents = [rng.integers(0, 65536, size=1 << 20, dtype=np.uint16) for _ in range(36)]
    with MDSWriter(tmp_path, vocab_size=65536) as writer:
        for document in documents:
            writer.add_document(document)
        files = writer.close()

    shards = read_mds(tmp_path)
    assert len(shards) == 2
    assert len(shards[0].raw) > 60 << 20
    assert all(file.bytes < SIXTY_FOUR_MIB for file in files)
    assert all((tmp_path / file.path).stat().st_size < SIXTY_FOUR_MIB for file in files)


# zstd's worst case for n bytes is n + n // 256 (zstd.h ZSTD_COMPRESSBOUND, n >= 128 KiB): it
# stays under 64 MiB up to 66_847_740 bytes.
@pytest.mark.parametrize("size_limit", [66_847_741, 64 << 20, 2**32])
def test_a_size_limit_that_could_compress_past_64_mib_is_refused(
    tmp_path: Path, size_limit: int
) -> None:
    with pytest.raises(ValueError, match="size_limit"):
        MDSWriter(tmp_path, vocab_size=100, size_limit=size_limit)


def test_the_largest_safe_size_limit_is_accepted(tmp_path: Path) -> None:
    writer = MDSWriter(tmp_path, vocab_size=100, size_limit=66_847_740)
    writer.add_document([1])
    assert len(writer.close()) == 2


def test_a_document_too_large_for_any_shard_is_refused(tmp_path: Path) -> None:
    writer = MDSWriter(tmp_path, vocab_size=100, size_limit=400)
    with pytest.raises(ValueError, match="does not fit"):
        writer.add_document([1] * 200)
    writer.abort()


@pytest.mark.parametrize("level", [0, 23])
def test_zstd_levels_outside_mosaicmls_range_are_refused(tmp_path: Path, level: int) -> None:
    with pytest.raises(ValueError, match="zstd_level"):
        MDSWriter(tmp_path, vocab_size=100, zstd_level=level)


def test_text_is_required_exactly_when_the_column_exists(tmp_path: Path) -> None:
    with_text = MDSWriter(tmp_path / "a", vocab_size=100, with_text=True)
    without_text = MDSWriter(tmp_path / "b", vocab_size=100)

    with pytest.raises(ValueError, match="text is required"):
        with_text.add_document([1])
    with pytest.raises(ValueError, match="no text column"):
        without_text.add_document([1], "hello")
    with_text.abort()
    without_text.abort()


def test_zero_documents_are_refused_and_leave_nothing(tmp_path: Path) -> None:
    writer = MDSWriter(tmp_path, vocab_size=100)
    with pytest.raises(ValueError, match="at least one document"):
        writer.close()
    assert list(tmp_path.iterdir()) == []


def test_empty_documents_are_refused(tmp_path: Path) -> None:
    writer = MDSWriter(tmp_path, vocab_size=100)
    with pytest.raises(ValueError, match="at least one token"):
        writer.add_document([])
    writer.abort()


def test_a_flipped_byte_in_a_shard_fails_its_checksum(tmp_path: Path) -> None:
    _write(tmp_path, [[1, 2, 3]] * 10, vocab_size=100)
    shard = tmp_path / "shard.00000.mds.zstd"
    content = bytearray(shard.read_bytes())
    content[len(content) // 2] ^= 0x01
    shard.write_bytes(bytes(content))

    with pytest.raises(FormatError, match="Checksum failure: shard.00000.mds.zstd"):
        read_mds(tmp_path)


def test_the_raw_hash_is_checked_after_decompression(tmp_path: Path) -> None:
    _write(tmp_path, [[1, 2, 3]], vocab_size=100)
    index_path = tmp_path / "index.json"
    index = json.loads(index_path.read_text())
    raw = zstandard.ZstdDecompressor().decompress((tmp_path / "shard.00000.mds.zstd").read_bytes())
    tampered = bytearray(raw)
    tampered[-1] ^= 0x01
    # A consistent compressed file whose content no longer matches the raw hash.
    compressed = zstandard.ZstdCompressor().compress(bytes(tampered))
    (tmp_path / "shard.00000.mds.zstd").write_bytes(compressed)
    zip_data = index["shards"][0]["zip_data"]
    zip_data["bytes"] = len(compressed)
    zip_data["hashes"]["sha256"] = hashlib.sha256(compressed).hexdigest()
    index_path.write_text(json.dumps(index))

    with pytest.raises(FormatError, match="Checksum failure: shard.00000.mds \\(sha256\\)"):
        read_mds(tmp_path)


def test_same_input_gives_identical_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    documents = [rng.integers(0, 50_000, size=n).tolist() for n in rng.integers(1, 300, size=80)]
    texts = [f"document {n}" for n in range(80)]

    first = _write(tmp_path / "a", documents, 50_000, texts, size_limit=20_000)
    second = _write(tmp_path / "b", documents, 50_000, texts, size_limit=20_000)

    assert first == second
    assert len(first) > 2
    for file in first:
        assert (tmp_path / "a" / file.path).read_bytes() == (
            tmp_path / "b" / file.path
        ).read_bytes()


def _fail_after_some_shards(directory: Path) -> None:
    with MDSWriter(directory, vocab_size=100, size_limit=400) as writer:
        for _ in range(20):
            writer.add_document([1] * 20)
        assert len(list(directory.glob("shard.*.mds.zstd"))) > 1
        raise KeyError("boom")


def test_an_exception_inside_the_block_removes_written_shards(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        _fail_after_some_shards(tmp_path)

    assert list(tmp_path.iterdir()) == []


def test_abort_after_close_removes_the_finished_export(tmp_path: Path) -> None:
    writer = MDSWriter(tmp_path, vocab_size=100, size_limit=400)
    for _ in range(20):
        writer.add_document([1] * 20)
    writer.close()

    writer.abort()

    assert list(tmp_path.iterdir()) == []
