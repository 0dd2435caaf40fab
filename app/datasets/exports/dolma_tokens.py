"""dolma / OLMo token arrays: `part-NNNNN.npy` raw token memmaps with `part-NNNNN.csv.gz` rows.

The .npy is not an .npy file: dolma's MemmapWriter (python/dolma/tokenizer/memmap_writer.py)
fills an np.memmap, so the file is the bare little-endian token array, and OLMo's
MemMapDataset (olmo/data/memmap_dataset.py) reads it back by file size and item size alone.
Documents are concatenated with no separator; the caller's EOS ends each. The metadata holds
one CSV row per document, no header: start,end,id,src,loc, where [start, end) are token
offsets into the .npy, src is where the document came from and loc its position there.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path
from typing import BinaryIO

from app.datasets.exports.base import (
    ExportedFile,
    ExportWriter,
    Tokens,
    as_token_array,
    describe_file,
    dolma_token_dtype,
)

# dolma's MemmapWriter.DEFAULT_MAX_TOKENS: 1 GiB per file at uint16.
DEFAULT_MAX_TOKENS_PER_FILE = 512 * 1024 * 1024


class _Part:
    """One open .npy and its .csv.gz."""

    def __init__(self, directory: Path, number: int) -> None:
        self.tokens_path = directory / f"part-{number:05}.npy"
        self.metadata_path = directory / f"part-{number:05}.csv.gz"
        self.tokens = 0
        self.documents = 0
        self._tokens_file: BinaryIO = self.tokens_path.open("wb")
        self._metadata_file: BinaryIO = self.metadata_path.open("wb")
        # No file name and mtime 0 in the gzip header, so the same rows give the same bytes.
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self._metadata_file, mtime=0)
        self._text = io.TextIOWrapper(self._gzip, encoding="utf-8", newline="")
        self._rows = csv.writer(self._text)

    def write(self, values: bytes, count: int, document_id: str, source: str, loc: int) -> None:
        self._tokens_file.write(values)
        self._rows.writerow([self.tokens, self.tokens + count, document_id, source, loc])
        self.tokens += count
        self.documents += 1

    def close(self) -> None:
        self._tokens_file.close()
        self._text.close()
        self._metadata_file.close()

    def describe(self, root: Path) -> list[ExportedFile]:
        return [
            describe_file(root, self.tokens_path, tokens=self.tokens, documents=self.documents),
            describe_file(root, self.metadata_path, tokens=0, documents=0),
        ]


class TokenArrayWriter(ExportWriter):
    """Write documents into token-array files of at most max_tokens_per_file tokens each."""

    def __init__(
        self,
        directory: Path,
        vocab_size: int,
        max_tokens_per_file: int = DEFAULT_MAX_TOKENS_PER_FILE,
    ) -> None:
        if max_tokens_per_file < 1:
            raise ValueError(f"max_tokens_per_file must be positive, got {max_tokens_per_file}")
        self.directory = directory
        self.vocab_size = vocab_size
        self.dtype = dolma_token_dtype(vocab_size)
        self.max_tokens_per_file = max_tokens_per_file
        self._parts: list[_Part] = []
        self._documents = 0
        directory.mkdir(parents=True, exist_ok=True)

    def add_document(
        self, tokens: Tokens, document_id: str, source: str, loc: int | None = None
    ) -> None:
        """Append one document; `loc` is its position in `source`, by default in this export."""
        self._check_open()
        values = as_token_array(tokens, self.vocab_size, self.dtype)
        if values.size > self.max_tokens_per_file:
            raise ValueError(
                f"a document of {values.size} tokens exceeds max_tokens_per_file "
                f"({self.max_tokens_per_file})"
            )
        # A document never straddles two files, so each row's offsets stay within its file.
        if not self._parts or self._parts[-1].tokens + values.size > self.max_tokens_per_file:
            if self._parts:
                self._parts[-1].close()
            self._parts.append(_Part(self.directory, len(self._parts)))
        location = self._documents if loc is None else loc
        self._parts[-1].write(values.tobytes(), values.size, document_id, source, location)
        self._documents += 1

    def close(self) -> list[ExportedFile]:
        """Finish the last file and describe them all; refuses an export with no documents."""
        self._check_open()
        if not self._parts:
            self.abort()
            # An empty memmap cannot be opened, and OLMo would count zero instances anyway.
            raise ValueError("a token-array export needs at least one document")
        self._parts[-1].close()
        self.closed = True
        return [file for part in self._parts for file in part.describe(self.directory)]

    def abort(self) -> None:
        """Close and delete the files written so far."""
        if self._parts:
            self._parts[-1].close()
        for part in self._parts:
            part.tokens_path.unlink(missing_ok=True)
            part.metadata_path.unlink(missing_ok=True)
        self.closed = True
