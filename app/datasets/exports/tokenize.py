"""Tokenize documents for export with a team's tokenizer.json, across worker processes.

`load_tokenizer` checks an uploaded tokenizer.json and resolves its end-of-document token;
`ParallelTokenizer` turns texts into one uint32 array per document, the document's ids then
the EOS id, in input order whatever the number of processes.

Each worker process loads the tokenizer once and encodes whole batches with tokenizers' own
Rust thread pool switched off (TOKENIZERS_PARALLELISM=false): N single-threaded processes on
N cores, rather than N processes each starting a pool as wide as the machine. bench/export.py
measures both.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import accumulate
from types import TracebackType
from typing import Any, Self

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

log = logging.getLogger(__name__)

# A tokenizer.json of today's largest vocabularies (Gemma's 262k) is about 33 MB.
MAX_TOKENIZER_BYTES = 64 * 1024 * 1024
# Every id must fit the int32 that Megatron and MDS write above 16 bits.
MAX_VOCAB_SIZE = int(np.iinfo(np.int32).max) + 1
# Encoded once on upload: a tokenizer that fails here (a word-level vocabulary with no unknown
# token, say) would fail on the first real document of every export.
_PROBE = "Hello, world! Ünïcödé, 日本語 and 🙂 in 2024: $3.14."

TokenIds = npt.NDArray[np.uint32]


class DocumentError(ValueError):
    """The tokenizer failed on one document; `index` is its position in the input."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(index, reason)
        self.index = index
        self.reason = reason

    def __str__(self) -> str:
        return f"document {self.index} could not be tokenized: {self.reason}"


@dataclass(frozen=True)
class TokenizerFile:
    """A checked tokenizer.json: its text, hash, vocabulary size and end-of-document id."""

    content: str = field(repr=False)
    sha256: str
    # One more than the largest id it can produce, added tokens included: what the export
    # writers size their token dtype by.
    vocab_size: int
    eos_id: int
    eos_token: str
    tokenizer: Tokenizer = field(repr=False, compare=False)


def load_tokenizer(data: bytes, eos: str | int) -> TokenizerFile:
    """Check an uploaded tokenizer.json and resolve its EOS; ValueError says what is wrong."""
    if not data:
        raise ValueError("the tokenizer file is empty")
    if len(data) > MAX_TOKENIZER_BYTES:
        raise ValueError(
            f"the tokenizer file is {len(data)} bytes; at most {MAX_TOKENIZER_BYTES} are accepted"
        )
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"the tokenizer file is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    try:
        document = json.loads(content)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"the tokenizer file is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    _check_layout(document)
    try:
        tokenizer = Tokenizer.from_str(content)
    except Exception as exc:  # tokenizers raises a bare Exception for every parse error
        raise ValueError(f"tokenizers cannot load this tokenizer.json: {exc}") from None
    vocab_size = _vocab_size(tokenizer)
    try:
        tokenizer.encode(_PROBE)
    except Exception as exc:
        raise ValueError(f"this tokenizer cannot encode ordinary text: {exc}") from None
    eos_id, eos_token = _resolve_eos(tokenizer, eos)
    return TokenizerFile(
        content=content,
        sha256=hashlib.sha256(data).hexdigest(),
        vocab_size=vocab_size,
        eos_id=eos_id,
        eos_token=eos_token,
        tokenizer=tokenizer,
    )


def _check_layout(document: Any) -> None:
    """Refuse the JSON files that travel next to tokenizer.json, naming them."""
    if not isinstance(document, dict):
        raise ValueError(
            "not a tokenizers tokenizer.json: the top level is a "
            f"{type(document).__name__}, not an object"
        )
    if "model" in document:
        return
    if "tokenizer_class" in document or "added_tokens_decoder" in document:
        hint = "this looks like tokenizer_config.json; upload tokenizer.json instead"
    elif document and all(isinstance(value, int) for value in document.values()):
        hint = "this looks like a bare vocabulary (vocab.json); upload tokenizer.json instead"
    else:
        hint = "it has no 'model' section"
    raise ValueError(f"not a tokenizers tokenizer.json: {hint}")


def _vocab_size(tokenizer: Tokenizer) -> int:
    vocabulary = tokenizer.get_vocab(with_added_tokens=True)
    if not vocabulary:
        raise ValueError("the tokenizer has an empty vocabulary")
    # Ids may have gaps (added tokens placed far above the model's vocabulary); the writers
    # need every id below the size, not the count of tokens.
    size = max(tokenizer.get_vocab_size(with_added_tokens=True), max(vocabulary.values()) + 1)
    if size > MAX_VOCAB_SIZE:
        raise ValueError(
            f"the tokenizer's largest id is {size - 1}; export formats store ids as int32, "
            f"so at most {MAX_VOCAB_SIZE - 1}"
        )
    return size


def _resolve_eos(tokenizer: Tokenizer, eos: str | int) -> tuple[int, str]:
    if isinstance(eos, int):
        token = tokenizer.id_to_token(eos)
        if token is None:
            raise ValueError(f"the tokenizer has no token with id {eos} to use as EOS")
        return eos, token
    eos_id = tokenizer.token_to_id(eos)
    if eos_id is None:
        special = sorted(
            added.content
            for added in tokenizer.get_added_tokens_decoder().values()
            if added.special
        )
        listed = ", ".join(repr(token) for token in special[:20]) or "none"
        raise ValueError(
            f"the tokenizer has no token {eos!r} to use as EOS; its special tokens: {listed}"
        )
    return eos_id, eos


class ParallelTokenizer:
    """Encode texts to per-document uint32 arrays (ids + EOS) on `processes` processes.

    `processes=1` encodes in the calling process, where tokenizers' own threads follow the
    caller's TOKENIZERS_PARALLELISM. Texts go out in batches of at most `batch_size`
    documents and `batch_chars` characters, `in_flight` batches at a time (twice the
    processes by default), so memory stays bounded however long the input.
    """

    def __init__(
        self,
        tokenizer: TokenizerFile,
        *,
        processes: int | None = None,
        batch_size: int = 256,
        batch_chars: int = 1 << 22,
        in_flight: int | None = None,
        add_special_tokens: bool = False,
        tokenizers_parallelism: bool = False,
    ) -> None:
        """`add_special_tokens` runs the tokenizer's post-processor (a Llama BOS, say), off by
        default as in dolma; `tokenizers_parallelism` leaves the Rust pool on in workers, for
        measuring only.
        """
        self.processes = processes if processes is not None else os.cpu_count() or 1
        if self.processes < 1:
            raise ValueError(f"processes must be at least 1, got {self.processes}")
        if self.processes > 1 and multiprocessing.current_process().daemon:
            # A daemonic process (a Celery prefork pool's child) may not start processes of its
            # own: encode here, where tokenizers' Rust threads use the cores instead.
            log.info("in a daemonic process: tokenizing in-process on tokenizers' threads")
            self.processes = 1
        if batch_size < 1 or batch_chars < 1:
            raise ValueError("batch_size and batch_chars must be at least 1")
        self.in_flight = in_flight if in_flight is not None else 2 * self.processes
        if self.in_flight < 1:
            raise ValueError(f"in_flight must be at least 1, got {self.in_flight}")
        self.batch_size = batch_size
        self.batch_chars = batch_chars
        self._file = tokenizer
        self._local: _Encoder | None = None
        self._pool: ProcessPoolExecutor | None = None
        if self.processes == 1:
            self._local = _Encoder(tokenizer.tokenizer, tokenizer.eos_id, add_special_tokens)
        else:
            # spawn, not fork: the caller may hold threads (tokenizers' own pool among them),
            # and a forked copy of a running thread pool can deadlock.
            self._pool = ProcessPoolExecutor(
                max_workers=self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(
                    tokenizer.content,
                    tokenizer.eos_id,
                    add_special_tokens,
                    tokenizers_parallelism,
                ),
            )

    @property
    def vocab_size(self) -> int:
        """One more than the largest id any document can hold."""
        return self._file.vocab_size

    @property
    def eos_id(self) -> int:
        """The id that ends every document."""
        return self._file.eos_id

    def encode(self, texts: Iterable[str]) -> Generator[TokenIds, None, None]:
        """Each text's ids then the EOS id, in input order, as they are ready.

        The arrays of one batch are views of one buffer: copy an array to keep it alone.
        Closing the generator early drops the batches still queued.
        """
        batches = _batches(texts, self.batch_size, self.batch_chars)
        if self._local is not None:
            start = 0
            for batch in batches:
                yield from _split(_call(self._local.encode, batch, start))
                start += len(batch)
            return
        if self._pool is None:
            raise RuntimeError("this ParallelTokenizer is closed")
        pending: deque[tuple[int, Future[_Encoded]]] = deque()
        start = 0
        try:
            for batch in batches:
                pending.append((start, self._pool.submit(_encode_in_worker, batch)))
                start += len(batch)
                if len(pending) >= self.in_flight:
                    yield from _split(_result(*pending.popleft()))
            while pending:
                yield from _split(_result(*pending.popleft()))
        finally:
            # Left early (an error, or the caller stopped reading): drop queued batches.
            for _, future in pending:
                future.cancel()

    def close(self) -> None:
        """Stop the worker processes; batches not yet started are dropped."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# A batch's ids end to end, EOS included, and each document's length.
_Encoded = tuple[TokenIds, list[int]]


class _Encoder:
    def __init__(self, tokenizer: Tokenizer, eos_id: int, add_special_tokens: bool) -> None:
        # A document's text is data: "<|endoftext|>" written in it is those characters, not
        # the EOS, which only the export appends (tokenizers matches special tokens in text by
        # default). A copy, so the caller's tokenizer keeps its own setting.
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.encode_special_tokens = True
        self.eos_id = eos_id
        self.add_special_tokens = add_special_tokens

    def encode(self, texts: list[str]) -> _Encoded:
        try:
            # encode_batch_fast skips character offsets, which an export never reads.
            encodings = self.tokenizer.encode_batch_fast(
                texts, add_special_tokens=self.add_special_tokens
            )
        except Exception:
            raise self._culprit(texts) from None
        ids: list[int] = []
        lengths: list[int] = []
        for encoding in encodings:
            document = encoding.ids
            ids += document
            ids.append(self.eos_id)
            lengths.append(len(document) + 1)
        return np.array(ids, dtype=np.uint32), lengths

    def _culprit(self, texts: list[str]) -> DocumentError:
        """The first document the tokenizer fails on alone, with its index in the batch."""
        for index, text in enumerate(texts):
            try:
                self.tokenizer.encode(text, add_special_tokens=self.add_special_tokens)
            except Exception as exc:
                return DocumentError(index, str(exc) or type(exc).__name__)
        return DocumentError(0, "the batch failed, yet each document encodes alone")


_worker: _Encoder | None = None


def _start_worker(
    content: str, eos_id: int, add_special_tokens: bool, tokenizers_parallelism: bool
) -> None:
    """Pool initializer: load the tokenizer once for every batch this process will encode."""
    global _worker
    # Read by tokenizers on every batch call; this process's own setting, not the caller's.
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if tokenizers_parallelism else "false"
    _worker = _Encoder(Tokenizer.from_str(content), eos_id, add_special_tokens)


def _encode_in_worker(texts: list[str]) -> _Encoded:
    assert _worker is not None, "worker started without _start_worker"
    return _worker.encode(texts)


def _call(encode: Callable[[list[str]], _Encoded], texts: list[str], start: int) -> _Encoded:
    try:
        return encode(texts)
    except DocumentError as exc:
        raise DocumentError(start + exc.index, exc.reason) from None


def _result(start: int, future: Future[_Encoded]) -> _Encoded:
    try:
        return future.result()
    except DocumentError as exc:
        raise DocumentError(start + exc.index, exc.reason) from None


def _split(encoded: _Encoded) -> Iterator[TokenIds]:
    ids, lengths = encoded
    begin = 0
    for end in accumulate(lengths):
        yield ids[begin:end]
        begin = end


def _batches(texts: Iterable[str], size: int, chars: int) -> Iterator[list[str]]:
    batch: list[str] = []
    held = 0
    for text in texts:
        batch.append(text)
        held += len(text)
        if len(batch) >= size or held >= chars:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch
