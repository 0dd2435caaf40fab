"""What every token-export format shares: the file record, token validation, file hashing."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import numpy.typing as npt

# Token arrays are written little-endian whatever the host: every reader of these formats
# (Megatron, OLMo, MosaicML) runs on little-endian machines and reads the bytes natively.
UINT16 = np.dtype("<u2")
INT32 = np.dtype("<i4")
UINT32 = np.dtype("<u4")

Tokens = npt.NDArray[np.integer[Any]] | Sequence[int]

_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class ExportedFile:
    """One finished file of an export; data files count tokens and documents, others count 0."""

    path: str
    bytes: int
    sha256: str
    tokens: int
    documents: int


class ExportWriter(ABC):
    """A writer that ends in close() (the files) or abort() (nothing left behind)."""

    closed: bool = False

    @abstractmethod
    def close(self) -> list[ExportedFile]:
        """Finish the export and describe its files."""

    @abstractmethod
    def abort(self) -> None:
        """Remove every file this writer has written, a finished export's included."""

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"{type(self).__name__} is already closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.closed:
            return
        self.abort()
        # Leaving the block without close() is a caller bug; say so rather than let the export
        # vanish without a word.
        if exc is None:
            raise RuntimeError(f"{type(self).__name__} left without close(); export discarded")


def megatron_token_dtype(vocab_size: int) -> np.dtype[Any]:
    """The .bin dtype Megatron-LM and GPT-NeoX pick for a vocabulary (uint16 below 65500)."""
    _check_vocab_size(vocab_size, np.iinfo(np.int32).max + 1)
    # Megatron's DType.optimal_dtype and NeoX's best_fitting_dtype use this exact bound, not
    # 65536; matching it keeps our files identical to what their preprocess_data.py writes.
    return UINT16 if vocab_size < 65500 else INT32


def dolma_token_dtype(vocab_size: int) -> np.dtype[Any]:
    """The memmap dtype dolma picks for a vocabulary: the smallest holding vocab_size - 1."""
    _check_vocab_size(vocab_size, np.iinfo(np.uint32).max + 1)
    # dolma uses np.min_scalar_type(vocab_size - 1), which is uint8 for byte-level vocabularies;
    # we never go below uint16, OLMo's default memmap_dtype, so configs need no special case.
    return UINT16 if vocab_size <= 65536 else UINT32


def mds_token_dtype(vocab_size: int) -> np.dtype[Any]:
    """The dtype of the MDS `tokens` column: uint16 when every id fits, else int32."""
    _check_vocab_size(vocab_size, np.iinfo(np.int32).max + 1)
    # int32 rather than uint32 for wide vocabularies: llm-foundry's converters use it and torch
    # has full int32 support, where its uint32 tensors lack most operations.
    return UINT16 if vocab_size <= 65536 else INT32


def _check_vocab_size(vocab_size: int, limit: int) -> None:
    if not 1 <= vocab_size <= limit:
        raise ValueError(f"vocab_size must be between 1 and {limit}, got {vocab_size}")


def as_token_array(tokens: Tokens, vocab_size: int, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """Check one document's token ids (1-D, integers, in the vocabulary) and cast them."""
    array = np.asarray(tokens)
    if array.ndim != 1:
        raise ValueError(f"a document's tokens must be one-dimensional, got shape {array.shape}")
    # Zero-token documents are refused in every format: the caller appends EOS, so an empty
    # document is an upstream bug, and MDS cannot encode an empty ndarray at all.
    if array.size == 0:
        raise ValueError("a document must have at least one token (its EOS)")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"token ids must be integers, got dtype {array.dtype}")
    low, high = int(array.min()), int(array.max())
    # Casting an out-of-vocabulary id would wrap around silently (70000 as uint16 is 4464).
    if low < 0 or high >= vocab_size:
        raise ValueError(f"token ids must lie in [0, {vocab_size}), got [{low}, {high}]")
    return array.astype(dtype, copy=False)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def describe_file(root: Path, path: Path, *, tokens: int, documents: int) -> ExportedFile:
    """Hash a finished file and describe it relative to the export directory."""
    return ExportedFile(
        path=path.relative_to(root).as_posix(),
        bytes=path.stat().st_size,
        sha256=sha256_file(path),
        tokens=tokens,
        documents=documents,
    )
