"""Tokenizing for export: tokenizer.json checks, and ParallelTokenizer against tokenizers itself."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tokenizers import Tokenizer, processors

from app.datasets.exports import tokenize
from app.datasets.exports.tokenize import (
    DocumentError,
    ParallelTokenizer,
    TokenizerFile,
    load_tokenizer,
)
from tests.datasets.exports.tokenizer_fixture import EOS, Writer, train_tokenizer

VOCAB_SIZE = 1000
EDGE_CASES = [
    "",
    " ",
    "\n\n",
    "a",
    "Ünïcödé façade, naïve café",
    "日本語のテキストと中文文本",
    "emoji 🙂🚀 and a ZWJ family 👩‍👩‍👧 and combining e\u0301",
    "Москва и Ελλάδα",
    "tabs\tand\r\nwindows line ends",
    "\x00 a NUL byte",
]


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tokenizer(tmp_path_factory.mktemp("tokenizer"), vocab_size=VOCAB_SIZE)


@pytest.fixture(scope="module")
def tokenizer_file(tokenizer_path: Path) -> TokenizerFile:
    return load_tokenizer(tokenizer_path.read_bytes(), EOS)


@pytest.fixture(scope="module")
def two_processes(tokenizer_file: TokenizerFile) -> Iterator[ParallelTokenizer]:
    # Small uneven batches: documents of one batch and the next interleave across processes.
    with ParallelTokenizer(tokenizer_file, processes=2, batch_size=7) as parallel:
        yield parallel


@pytest.fixture(scope="module")
def texts() -> list[str]:
    writer = Writer(seed=11)
    documents = writer.documents(60, low=1, high=300)
    # Edge cases among ordinary documents, not only at the ends.
    for offset, case in enumerate(EDGE_CASES):
        documents.insert(offset * 6, case)
    return documents


def expected(path: Path, texts: list[str], **kwargs: Any) -> list[list[int]]:
    """What tokenizers itself produces, plus the EOS: the reference for every output."""
    reference = Tokenizer.from_file(str(path))
    reference.encode_special_tokens = True  # a document's text is data (see the next test)
    eos_id = reference.token_to_id(EOS)
    assert eos_id is not None
    return [encoding.ids + [eos_id] for encoding in reference.encode_batch(texts, **kwargs)]


def as_lists(arrays: Iterator[np.ndarray[Any, Any]]) -> list[list[int]]:
    result = []
    for array in arrays:
        assert array.dtype == np.uint32
        assert array.ndim == 1
        result.append(array.tolist())
    return result


# ParallelTokenizer.


@pytest.mark.parametrize("processes", [1, 2])
def test_output_is_encode_batch_plus_eos(
    tokenizer_path: Path, tokenizer_file: TokenizerFile, texts: list[str], processes: int
) -> None:
    with ParallelTokenizer(tokenizer_file, processes=processes, batch_size=5) as parallel:
        got = as_lists(parallel.encode(texts))

    assert got == expected(tokenizer_path, texts)
    assert sum(map(len, got)) > 10 * len(texts)  # real documents, not a run of EOS


def test_same_output_whatever_the_processes_and_batches(
    tokenizer_path: Path, tokenizer_file: TokenizerFile, texts: list[str]
) -> None:
    reference = expected(tokenizer_path, texts)
    for processes, batch_size, batch_chars in [(1, 1, 1 << 22), (3, 4, 900), (2, 64, 1 << 22)]:
        with ParallelTokenizer(
            tokenizer_file, processes=processes, batch_size=batch_size, batch_chars=batch_chars
        ) as parallel:
            assert as_lists(parallel.encode(iter(texts))) == reference, (processes, batch_size)


def test_order_holds_when_later_batches_finish_first(
    tokenizer_path: Path, tokenizer_file: TokenizerFile
) -> None:
    # The first batch is one long document; the small batches behind it finish first on
    # the other process, and must still come out after it.
    long = " ".join(Writer(seed=5).documents(40, low=1500, high=1500))
    short = [f"document number {n} " * (n % 9) for n in range(200)]
    texts = [long, *short]

    with ParallelTokenizer(
        tokenizer_file, processes=2, batch_size=3, batch_chars=200, in_flight=8
    ) as parallel:
        got = as_lists(parallel.encode(texts))

    assert got == expected(tokenizer_path, texts)


@pytest.mark.parametrize("processes", [1, 2])
def test_an_eos_written_in_a_document_is_text_not_its_end(
    tokenizer_file: TokenizerFile, processes: int
) -> None:
    text = f"The log ended with {EOS} and then went on."
    with ParallelTokenizer(tokenizer_file, processes=processes) as parallel:
        (ids,) = as_lists(parallel.encode([text]))
    assert ids.count(tokenizer_file.eos_id) == 1
    assert ids[-1] == tokenizer_file.eos_id
    assert tokenizer_file.tokenizer.decode(ids[:-1]) == text
    assert tokenizer_file.tokenizer.encode_special_tokens is False, "the caller's is untouched"


def test_empty_text_is_only_eos(tokenizer_file: TokenizerFile) -> None:
    (only,) = ParallelTokenizer(tokenizer_file, processes=1).encode([""])
    assert only.tolist() == [tokenizer_file.eos_id]


def test_no_texts_no_arrays(two_processes: ParallelTokenizer) -> None:
    assert list(two_processes.encode([])) == []


def test_unicode_round_trips(tokenizer_path: Path, two_processes: ParallelTokenizer) -> None:
    decoder = Tokenizer.from_file(str(tokenizer_path))
    arrays = list(two_processes.encode(EDGE_CASES))
    for text, array in zip(EDGE_CASES, arrays, strict=True):
        assert array[-1] == two_processes.eos_id
        assert decoder.decode(array[:-1].tolist()) == text


def test_streams_with_bounded_reading_ahead(two_processes: ParallelTokenizer) -> None:
    pulled = 0

    def endless() -> Iterator[str]:
        nonlocal pulled
        for number in itertools.count():
            pulled += 1
            yield f"text {number}"

    arrays = two_processes.encode(endless())
    first = list(itertools.islice(arrays, 10))
    arrays.close()

    assert len(first) == 10
    # Two batches in flight per process, seven texts a batch.
    assert pulled <= two_processes.in_flight * two_processes.batch_size + 7


def test_batches_end_at_batch_chars(tokenizer_file: TokenizerFile) -> None:
    pulled = 0

    def endless() -> Iterator[str]:
        nonlocal pulled
        for _ in itertools.count():
            pulled += 1
            yield "x" * 60

    arrays = ParallelTokenizer(
        tokenizer_file, processes=1, batch_size=1000, batch_chars=100
    ).encode(endless())
    next(arrays)
    arrays.close()

    assert pulled == 2  # 120 characters close the first batch


def test_post_processor_runs_only_when_asked(tmp_path: Path, tokenizer_path: Path) -> None:
    with_bos = Tokenizer.from_file(str(tokenizer_path))
    eos_id = with_bos.token_to_id(EOS)
    assert eos_id is not None
    with_bos.post_processor = processors.TemplateProcessing(
        single=f"{EOS} $A", special_tokens=[(EOS, eos_id)]
    )
    path = tmp_path / "tokenizer.json"
    with_bos.save(str(path))
    checked = load_tokenizer(path.read_bytes(), EOS)
    text = ["a short text"]
    body = with_bos.encode(text[0], add_special_tokens=False).ids

    for processes in (1, 2):
        with ParallelTokenizer(checked, processes=processes) as plain:
            assert as_lists(plain.encode(text)) == [body + [eos_id]]
        with ParallelTokenizer(checked, processes=processes, add_special_tokens=True) as full:
            assert as_lists(full.encode(text)) == [[eos_id, *body, eos_id]]
            assert as_lists(full.encode(text)) == expected(path, text)


def _word_level(vocab: dict[str, int]) -> bytes:
    """A word-level tokenizer; where "[UNK]" is not in `vocab`, new words make it fail."""
    model = {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    return json.dumps(
        {
            "version": "1.0",
            "added_tokens": [],
            "normalizer": None,
            "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": None,
            "decoder": None,
            "truncation": None,
            "padding": None,
            "model": model,
        }
    ).encode()


PROBE_WORDS = "Hello , world ! Ünïcödé 日本語 and 🙂 in 2024 : $ 3 . 14".split()


@pytest.mark.parametrize("processes", [1, 2])
def test_a_failing_document_is_named_by_its_input_position(processes: int) -> None:
    # A word-level vocabulary without an unknown token: fine on the probe, fails on "zebra".
    vocab = {word: index for index, word in enumerate([*PROBE_WORDS, "</s>", "the"])}
    checked = load_tokenizer(_word_level(vocab), "</s>")
    texts = ["the"] * 5 + ["the zebra"] + ["the"] * 3

    with (
        ParallelTokenizer(checked, processes=processes, batch_size=2) as parallel,
        pytest.raises(DocumentError) as raised,
    ):
        list(parallel.encode(texts))

    assert raised.value.index == 5
    assert "document 5 could not be tokenized" in str(raised.value)
    assert "[UNK]" in str(raised.value) or "Missing" in str(raised.value)


def test_refuses_bad_settings_and_use_after_close(tokenizer_file: TokenizerFile) -> None:
    makers: list[Callable[[], object]] = [
        lambda: ParallelTokenizer(tokenizer_file, processes=0),
        lambda: ParallelTokenizer(tokenizer_file, batch_size=0),
        lambda: ParallelTokenizer(tokenizer_file, batch_chars=0),
        lambda: ParallelTokenizer(tokenizer_file, in_flight=0),
    ]
    for make in makers:
        with pytest.raises(ValueError, match="at least 1"):
            make()
    parallel = ParallelTokenizer(tokenizer_file, processes=2)
    parallel.close()
    with pytest.raises(RuntimeError, match="closed"):
        list(parallel.encode(["a"]))


def test_vocab_size_and_eos(two_processes: ParallelTokenizer, tokenizer_path: Path) -> None:
    reference = Tokenizer.from_file(str(tokenizer_path))
    assert two_processes.vocab_size == VOCAB_SIZE == reference.get_vocab_size()
    assert two_processes.eos_id == reference.token_to_id(EOS)


# load_tokenizer.


def test_load_reports_hash_size_and_eos(tokenizer_path: Path) -> None:
    data = tokenizer_path.read_bytes()

    checked = load_tokenizer(data, EOS)

    assert checked.sha256 == hashlib.sha256(data).hexdigest()
    assert checked.vocab_size == VOCAB_SIZE
    assert checked.eos_token == EOS
    assert checked.eos_id == Tokenizer.from_file(str(tokenizer_path)).token_to_id(EOS)
    by_id = load_tokenizer(data, checked.eos_id)
    assert (by_id.eos_id, by_id.eos_token) == (checked.eos_id, EOS)
    assert load_tokenizer(b"\xef\xbb\xbf" + data, EOS).vocab_size == VOCAB_SIZE  # a BOM


def test_vocab_size_counts_up_to_the_largest_id() -> None:
    vocab = {word: index for index, word in enumerate(["[UNK]", *PROBE_WORDS])}
    vocab["</s>"] = 70_000  # ids with a gap: the dtype must hold 70000, not len(vocab)

    checked = load_tokenizer(_word_level(vocab), "</s>")

    assert checked.vocab_size == 70_001
    assert checked.eos_id == 70_000


def _trained(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"model": ', "not JSON: Expecting value at line 1 column 11"),
        (b"[1, 2]", "top level is a list"),
        (
            b'{"tokenizer_class": "GPT2Tokenizer", "added_tokens_decoder": {}}',
            "tokenizer_config.json",
        ),
        (b'{"hello": 0, "world": 1}', "vocab.json"),
        (b'{"version": "1.0"}', "no 'model' section"),
        (b'{"model": {"type": "NoSuchModel"}}', "tokenizers cannot load"),
        (_word_level({"a": 0, "</s>": 1}), "cannot encode ordinary text"),
        (_word_level({}), "empty vocabulary"),
        (_word_level({"[UNK]": 0, "</s>": 2**31}), "int32"),
    ],
)
def test_load_refuses_what_is_not_a_usable_tokenizer(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        load_tokenizer(data, "</s>")


def test_load_refuses_a_missing_eos_naming_the_special_tokens(tokenizer_path: Path) -> None:
    data = tokenizer_path.read_bytes()
    with pytest.raises(ValueError, match=r"no token '</s>' to use as EOS.*'<\|endoftext\|>'"):
        load_tokenizer(data, "</s>")
    with pytest.raises(ValueError, match="no token with id 1000 "):
        load_tokenizer(data, VOCAB_SIZE)


def test_load_refuses_a_file_over_the_limit(
    tokenizer_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tokenizer_path.read_bytes()
    monkeypatch.setattr(tokenize, "MAX_TOKENIZER_BYTES", len(data) - 1)
    with pytest.raises(ValueError, match=f"is {len(data)} bytes; at most {len(data) - 1}"):
        load_tokenizer(data, EOS)


# The fixture itself.


def test_fixture_trains_the_same_tokenizer_twice(tmp_path: Path, tokenizer_path: Path) -> None:
    again = train_tokenizer(tmp_path, vocab_size=VOCAB_SIZE)
    assert again.read_bytes() == tokenizer_path.read_bytes()
    trained = _trained(again)
    assert trained["model"]["type"] == "BPE"
    assert len(trained["model"]["vocab"]) == VOCAB_SIZE
