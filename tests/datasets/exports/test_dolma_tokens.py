"""dolma / OLMo token-array writer, read back as OLMo reads the arrays and dolma the metadata."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.datasets.exports.base import ExportedFile
from app.datasets.exports.dolma_tokens import TokenArrayWriter
from tests.datasets.exports.readers import FormatError, read_token_arrays, verify_files

Document = tuple[list[int], str, str]


def _write(
    directory: Path, documents: list[Document], vocab_size: int, max_tokens_per_file: int
) -> list[ExportedFile]:
    with TokenArrayWriter(directory, vocab_size, max_tokens_per_file) as writer:
        for tokens, document_id, source in documents:
            writer.add_document(tokens, document_id, source)
        return writer.close()


@st.composite
def _corpora(draw: st.DrawFn) -> tuple[int, list[Document]]:
    vocab_size = draw(st.sampled_from([2, 50_000, 65536, 65537, 2**32]))
    token = st.integers(min_value=0, max_value=vocab_size - 1)
    document = st.tuples(
        st.lists(token, min_size=1, max_size=40),
        st.text(min_size=1, max_size=12),  # ids with commas, quotes and newlines included
        st.sampled_from(["s3://bucket/shard-0.jsonl.zst", 'local,odd "name"']),
    )
    return vocab_size, draw(st.lists(document, min_size=1, max_size=30))


@settings(max_examples=60, deadline=None)
@given(_corpora(), st.sampled_from([40, 100, 10_000]))
def test_documents_round_trip(corpus: tuple[int, list[Document]], max_tokens: int) -> None:
    vocab_size, documents = corpus
    dtype = np.dtype("<u2") if vocab_size <= 65536 else np.dtype("<u4")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = _write(root, documents, vocab_size, max_tokens)

        read = read_token_arrays(root, dtype)
        assert [(d.tokens.tolist(), d.id, d.src) for d in read] == documents
        assert [d.loc for d in read] == list(range(len(documents)))
        verify_files(root, files)
        arrays = [file for file in files if file.path.endswith(".npy")]
        assert all(file.tokens <= max_tokens for file in arrays)
        assert all(file.bytes == file.tokens * dtype.itemsize for file in arrays)
        assert sum(file.tokens for file in files) == sum(len(d[0]) for d in documents)
        assert sum(file.documents for file in files) == len(documents)


def test_files_are_raw_arrays_split_between_documents(tmp_path: Path) -> None:
    documents: list[Document] = [([1, 2, 3], "a", "src"), ([4, 5], "b", "src"), ([6], "c", "src")]
    files = _write(tmp_path, documents, vocab_size=100, max_tokens_per_file=5)

    assert [(file.path, file.tokens, file.documents) for file in files] == [
        ("part-00000.npy", 5, 2),
        ("part-00000.csv.gz", 0, 0),
        ("part-00001.npy", 1, 1),
        ("part-00001.csv.gz", 0, 0),
    ]
    # No .npy header: the file is the bare little-endian array OLMo reads by size.
    assert (tmp_path / "part-00000.npy").read_bytes() == np.array(
        [1, 2, 3, 4, 5], dtype="<u2"
    ).tobytes()
    # dolma's csv.writer rows: start,end,id,src,loc with excel line endings, no header.
    metadata = gzip.decompress((tmp_path / "part-00000.csv.gz").read_bytes())
    assert metadata == b"0,3,a,src,0\r\n3,5,b,src,1\r\n"
    assert gzip.decompress((tmp_path / "part-00001.csv.gz").read_bytes()) == b"0,1,c,src,2\r\n"
    # No file name and no modification time in the gzip header, so reruns are byte-identical.
    header = (tmp_path / "part-00000.csv.gz").read_bytes()[:10]
    assert header[3] == 0  # FLG: no FNAME
    assert header[4:8] == b"\x00\x00\x00\x00"  # MTIME


def test_an_explicit_location_is_written(tmp_path: Path) -> None:
    with TokenArrayWriter(tmp_path, vocab_size=100) as writer:
        writer.add_document([1], "a", "shard-3.jsonl", loc=41)
        writer.close()

    assert read_token_arrays(tmp_path, np.dtype("<u2"))[0].loc == 41


@pytest.mark.parametrize(
    ("vocab_size", "itemsize"),
    [(65536, 2), (65537, 4), (2**32, 4)],
)
def test_dtype_is_the_smallest_that_holds_the_largest_id(
    tmp_path: Path, vocab_size: int, itemsize: int
) -> None:
    files = _write(tmp_path, [([0, vocab_size - 1], "a", "s")], vocab_size, 10)

    assert files[0].bytes == 2 * itemsize
    dtype = np.dtype(f"<u{itemsize}")
    assert read_token_arrays(tmp_path, dtype)[0].tokens.tolist() == [0, vocab_size - 1]


def test_a_vocabulary_past_uint32_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        TokenArrayWriter(tmp_path, vocab_size=2**32 + 1)


def test_a_document_longer_than_a_file_is_refused(tmp_path: Path) -> None:
    writer = TokenArrayWriter(tmp_path, vocab_size=100, max_tokens_per_file=3)
    with pytest.raises(ValueError, match="exceeds max_tokens_per_file"):
        writer.add_document([1, 2, 3, 4], "a", "s")
    writer.abort()


@pytest.mark.parametrize("tokens", [[], [100]], ids=["empty", "out-of-vocabulary"])
def test_bad_documents_are_refused(tmp_path: Path, tokens: list[int]) -> None:
    writer = TokenArrayWriter(tmp_path, vocab_size=100)
    with pytest.raises(ValueError, match="token"):
        writer.add_document(tokens, "a", "s")
    writer.abort()


def test_zero_documents_are_refused_and_leave_nothing(tmp_path: Path) -> None:
    writer = TokenArrayWriter(tmp_path, vocab_size=100)
    with pytest.raises(ValueError, match="at least one document"):
        writer.close()
    assert list(tmp_path.iterdir()) == []


def test_a_flipped_token_byte_fails_hash_verification(tmp_path: Path) -> None:
    files = _write(tmp_path, [([1, 2, 3], "a", "s")], vocab_size=100, max_tokens_per_file=10)
    array = tmp_path / "part-00000.npy"
    content = bytearray(array.read_bytes())
    content[2] ^= 0x01
    array.write_bytes(bytes(content))

    read_token_arrays(tmp_path, np.dtype("<u2"))  # still well-formed: only the hash can tell
    with pytest.raises(FormatError, match="part-00000.npy: sha256"):
        verify_files(tmp_path, files)


def test_metadata_that_does_not_tile_the_array_is_rejected(tmp_path: Path) -> None:
    _write(tmp_path, [([1, 2, 3], "a", "s")], vocab_size=100, max_tokens_per_file=10)
    (tmp_path / "part-00000.csv.gz").write_bytes(gzip.compress(b"0,2,a,s,0\r\n"))

    with pytest.raises(FormatError, match="tokens after the last document"):
        read_token_arrays(tmp_path, np.dtype("<u2"))


def test_same_input_gives_identical_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    documents: list[Document] = [
        (rng.integers(0, 50_000, size=n).tolist(), f"doc-{i}", "s3://b/k.jsonl")
        for i, n in enumerate(rng.integers(1, 300, size=60))
    ]

    first = _write(tmp_path / "a", documents, 50_000, max_tokens_per_file=2000)
    second = _write(tmp_path / "b", documents, 50_000, max_tokens_per_file=2000)

    assert first == second
    assert len(first) > 4
    for file in first:
        assert (tmp_path / "a" / file.path).read_bytes() == (
            tmp_path / "b" / file.path
        ).read_bytes()


def _fail_after_some_files(directory: Path) -> None:
    with TokenArrayWriter(directory, 100, max_tokens_per_file=2) as writer:
        for number in range(5):
            writer.add_document([1, 2], f"d{number}", "s")
        assert len(list(directory.glob("part-*.npy"))) == 5
        raise KeyError("boom")


def test_an_exception_inside_the_block_removes_written_files(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        _fail_after_some_files(tmp_path)

    assert list(tmp_path.iterdir()) == []


def test_abort_after_close_removes_the_finished_export(tmp_path: Path) -> None:
    writer = TokenArrayWriter(tmp_path, 100, max_tokens_per_file=2)
    for number in range(3):
        writer.add_document([1, 2], f"d{number}", "s")
    writer.close()

    writer.abort()

    assert list(tmp_path.iterdir()) == []
