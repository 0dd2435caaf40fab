"""Megatron-LM / GPT-NeoX indexed dataset (MMIDIDX): `<prefix>.bin` tokens, `<prefix>.idx` index.

Layout of the .idx, all little-endian (megatron/core/datasets/indexed_dataset.py):
magic `MMIDIDX\\x00\\x00`, u64 version 1, u8 dtype code, u64 sequence count, u64 document-index
count, then i32 sequence lengths, i64 byte pointers into the .bin, i64 document indices. The
document indices start at 0 and end each document, so there is one more than there are
documents. Here one document is one sequence, which is what preprocess_data.py writes.
"""

from __future__ import annotations

import struct
from array import array
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from app.datasets.exports.base import (
    INT32,
    UINT16,
    ExportedFile,
    ExportWriter,
    Tokens,
    as_token_array,
    describe_file,
    megatron_token_dtype,
)

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
# Megatron-LM's DType enum; GPT-NeoX's table agrees on these two (they differ on the floats).
DTYPE_CODES = {UINT16: 8, INT32: 4}

_MAX_SEQUENCE_LENGTH = np.iinfo(np.int32).max


def data_path(prefix: Path) -> Path:
    """The .bin file Megatron opens for `--data-path <prefix>`."""
    return prefix.with_name(prefix.name + ".bin")


def index_path(prefix: Path) -> Path:
    """The .idx file Megatron opens for `--data-path <prefix>`."""
    return prefix.with_name(prefix.name + ".idx")


class IndexedDatasetWriter(ExportWriter):
    """Stream documents into `<prefix>.bin`; write `<prefix>.idx` on close."""

    def __init__(self, prefix: Path, vocab_size: int) -> None:
        self.prefix = prefix
        self.vocab_size = vocab_size
        self.dtype = megatron_token_dtype(vocab_size)
        # Only the lengths stay in memory (8 bytes a document); the tokens go straight to disk.
        self._lengths = array("q")
        self._tokens = 0
        prefix.parent.mkdir(parents=True, exist_ok=True)
        self._bin: BinaryIO | None = data_path(prefix).open("wb")

    def add_document(self, tokens: Tokens) -> None:
        """Append one document (the caller has already appended its EOS) as one sequence."""
        self._check_open()
        values = as_token_array(tokens, self.vocab_size, self.dtype)
        if values.size > _MAX_SEQUENCE_LENGTH:
            raise ValueError(f"a sequence holds at most {_MAX_SEQUENCE_LENGTH} tokens")
        assert self._bin is not None
        self._bin.write(values.tobytes())
        self._lengths.append(values.size)
        self._tokens += values.size

    def close(self) -> list[ExportedFile]:
        """Write the index and describe both files; refuses an export with no documents."""
        self._check_open()
        if not self._lengths:
            self.abort()
            # An empty .bin cannot even be memory-mapped, so Megatron could not open it.
            raise ValueError("an indexed dataset needs at least one document")
        assert self._bin is not None
        self._bin.close()
        self._bin = None
        index_path(self.prefix).write_bytes(encode_index(self._lengths, self.dtype))
        self.closed = True
        root = self.prefix.parent
        return [
            describe_file(
                root, data_path(self.prefix), tokens=self._tokens, documents=len(self._lengths)
            ),
            describe_file(root, index_path(self.prefix), tokens=0, documents=0),
        ]

    def abort(self) -> None:
        """Close and delete the partial files."""
        if self._bin is not None:
            self._bin.close()
            self._bin = None
        data_path(self.prefix).unlink(missing_ok=True)
        index_path(self.prefix).unlink(missing_ok=True)
        self.closed = True


def encode_index(lengths: array[int], dtype: np.dtype[Any]) -> bytes:
    """The .idx bytes for documents of these lengths, one sequence each."""
    count = len(lengths)
    sizes = np.frombuffer(lengths, dtype=np.int64)
    pointers = np.zeros(count, dtype="<i8")
    np.cumsum(sizes[:-1] * dtype.itemsize, out=pointers[1:])
    # One sequence per document: document d ends after sequence d.
    document_indices = np.arange(count + 1, dtype="<i8")
    header = MAGIC + struct.pack("<QBQQ", VERSION, DTYPE_CODES[dtype], count, count + 1)
    return b"".join(
        [header, sizes.astype("<i4").tobytes(), pointers.tobytes(), document_indices.tobytes()]
    )
