"""Megatron indexed dataset writer, read back by an independent MMIDIDX reader."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.datasets.exports.base import ExportedFile
from app.datasets.exports.megatron import IndexedDatasetWriter, data_path
from tests.datasets.exports.readers import FormatError, read_megatron, verify_files


def _write(prefix: Path, documents: list[list[int]], vocab_size: int) -> list[ExportedFile]:
    with IndexedDatasetWriter(prefix, vocab_size) as writer:
        for document in documents:
            writer.add_document(document)
        return writer.close()


@st.composite
def _corpora(draw: st.DrawFn) -> tuple[int, list[list[int]]]:
    vocab_size = draw(st.sampled_from([2, 1000, 65499, 65500, 65536, 200_000]))
    token = st.integers(min_value=0, max_value=vocab_size - 1)
    documents = draw(st.lists(st.lists(token, min_size=1, max_size=40), min_size=1, max_size=30))
    return vocab_size, documents


@settings(max_examples=60, deadline=None)
@given(_corpora())
def test_documents_round_trip(corpus: tuple[int, list[list[int]]]) -> None:
    vocab_size, documents = corpus
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = _write(root / "corpus_text_document", documents, vocab_size)

        dataset = read_megatron(root / "corpus_text_document")
        assert [document.tolist() for document in dataset.documents] == documents
        assert dataset.dtype == (np.dtype("<u2") if vocab_size < 65500 else np.dtype("<i4"))
        verify_files(root, files)
        assert [file.path for file in files] == [
            "corpus_text_document.bin",
            "corpus_text_document.idx",
        ]
        assert sum(file.tokens for file in files) == sum(map(len, documents))
        assert sum(file.documents for file in files) == len(documents)


def test_index_bytes_follow_the_published_layout(tmp_path: Path) -> None:
    _write(tmp_path / "tiny", [[1, 2, 3], [4]], vocab_size=100)

    expected_index = (
        b"MMIDIDX\x00\x00"
        + struct.pack("<Q", 1)  # version
        + struct.pack("<B", 8)  # uint16
        + struct.pack("<QQ", 2, 3)  # two sequences, three document boundaries
        + struct.pack("<2i", 3, 1)  # lengths
        + struct.pack("<2q", 0, 6)  # byte pointers
        + struct.pack("<3q", 0, 1, 2)  # document indices
    )
    assert (tmp_path / "tiny.idx").read_bytes() == expected_index
    assert (tmp_path / "tiny.bin").read_bytes() == struct.pack("<4H", 1, 2, 3, 4)


@pytest.mark.parametrize(
    ("vocab_size", "code", "itemsize"),
    [(65499, 8, 2), (65500, 4, 4), (2**31, 4, 4)],
)
def test_dtype_follows_megatrons_bound(
    tmp_path: Path, vocab_size: int, code: int, itemsize: int
) -> None:
    _write(tmp_path / "data", [[0, vocab_size - 1]], vocab_size)

    assert (tmp_path / "data.idx").read_bytes()[17] == code
    assert (tmp_path / "data.bin").stat().st_size == 2 * itemsize
    assert read_megatron(tmp_path / "data").documents[0].tolist() == [0, vocab_size - 1]


@pytest.mark.parametrize("vocab_size", [0, 2**31 + 1])
def test_vocabulary_outside_int32_is_refused(tmp_path: Path, vocab_size: int) -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        IndexedDatasetWriter(tmp_path / "data", vocab_size)


@pytest.mark.parametrize(
    "tokens",
    [[1, 65499], [-1, 2], [], [[1, 2]], [1.0, 2.0]],
    ids=["out-of-vocabulary", "negative", "empty", "two-dimensional", "floats"],
)
def test_bad_documents_are_refused(tmp_path: Path, tokens: list[object]) -> None:
    writer = IndexedDatasetWriter(tmp_path / "data", vocab_size=65499)
    with pytest.raises(ValueError, match="token|document"):
        writer.add_document(tokens)  # type: ignore[arg-type]
    writer.abort()


def test_zero_documents_are_refused_and_leave_nothing(tmp_path: Path) -> None:
    writer = IndexedDatasetWriter(tmp_path / "data", vocab_size=100)
    with pytest.raises(ValueError, match="at least one document"):
        writer.close()
    assert list(tmp_path.iterdir()) == []


def test_numpy_arrays_of_any_integer_dtype_are_accepted(tmp_path: Path) -> None:
    documents: list[npt.NDArray[np.integer[Any]]] = [
        np.array([5, 6], dtype=np.int64),
        np.array([7], dtype=np.uint8),
    ]
    with IndexedDatasetWriter(tmp_path / "data", vocab_size=100) as writer:
        for document in documents:
            writer.add_document(document)
        writer.close()

    assert [d.tolist() for d in read_megatron(tmp_path / "data").documents] == [[5, 6], [7]]


def test_a_flipped_token_byte_fails_hash_verification(tmp_path: Path) -> None:
    files = _write(tmp_path / "data", [[1, 2, 3], [4, 5]], vocab_size=100)
    data = tmp_path / "data.bin"
    content = bytearray(data.read_bytes())
    content[3] ^= 0x01
    data.write_bytes(bytes(content))

    read_megatron(tmp_path / "data")  # still well-formed: only the hash can tell
    with pytest.raises(FormatError, match="data.bin: sha256"):
        verify_files(tmp_path, files)


def test_a_corrupted_index_header_is_rejected(tmp_path: Path) -> None:
    _write(tmp_path / "data", [[1, 2, 3]], vocab_size=100)
    index = tmp_path / "data.idx"
    content = bytearray(index.read_bytes())
    content[0] ^= 0x01
    index.write_bytes(bytes(content))

    with pytest.raises(FormatError, match="magic"):
        read_megatron(tmp_path / "data")


def test_same_input_gives_identical_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    documents = [rng.integers(0, 50_000, size=n).tolist() for n in rng.integers(1, 500, size=50)]

    first = _write(tmp_path / "a" / "data", documents, vocab_size=50_000)
    second = _write(tmp_path / "b" / "data", documents, vocab_size=50_000)

    assert first == second
    for name in ("data.bin", "data.idx"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def _fail_while_writing(prefix: Path) -> None:
    with IndexedDatasetWriter(prefix, 100) as writer:
        writer.add_document([1, 2])
        assert data_path(prefix).exists()
        raise KeyError("boom")


def test_an_exception_inside_the_block_removes_partial_files(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        _fail_while_writing(tmp_path / "data")

    assert list(tmp_path.iterdir()) == []


def test_leaving_the_block_without_close_is_an_error(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError, match="without close"),
        IndexedDatasetWriter(tmp_path / "data", 100) as writer,
    ):
        writer.add_document([1, 2])

    assert list(tmp_path.iterdir()) == []


def test_a_closed_writer_takes_no_more_documents(tmp_path: Path) -> None:
    writer = IndexedDatasetWriter(tmp_path / "data", 100)
    writer.add_document([1])
    writer.close()

    with pytest.raises(RuntimeError, match="closed"):
        writer.add_document([2])


def test_abort_after_close_removes_the_finished_export(tmp_path: Path) -> None:
    writer = IndexedDatasetWriter(tmp_path / "data", 100)
    writer.add_document([1])
    writer.close()

    writer.abort()

    assert list(tmp_path.iterdir()) == []
