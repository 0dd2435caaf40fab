"""MosaicML Streaming MDS: zstd-compressed `shard.NNNNN.mds.zstd` files and an `index.json`.

Layout as MosaicML's MDSWriter and MDSReader (streaming/base/format/mds/) write and read it:
a shard is u32 sample count, u32 byte offsets (count + 1, from the start of the file), the
shard's config as sorted-key JSON, then the samples. A sample holds one u32 size per
variable-size column, in column order, then each column's bytes in column order. Columns are
sorted by name. All integers little-endian. As with MosaicML when compression is set, only the
compressed shard is kept; index.json describes both and hashes both.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import zstandard

from app.datasets.exports.base import (
    ExportedFile,
    ExportWriter,
    Tokens,
    as_token_array,
    describe_file,
    mds_token_dtype,
)

INDEX_NAME = "index.json"
# Shards must stay under 64 MiB once compressed; MosaicML's own default limit is 1 << 26.
MAX_COMPRESSED_SHARD_BYTES = 1 << 26
# 63 MiB: even zstd's worst case (incompressible input) stays under the 64 MiB above.
DEFAULT_SIZE_LIMIT = 63 << 20
# MosaicML's default level for "zstd"; it accepts levels 1 to 22.
DEFAULT_ZSTD_LEVEL = 3

# NDArray encoding: values whose dtype is fixed by the column ("ndarray:uint16") are preceded
# by one byte (ndim << 2 | shape dtype) and the shape in the smallest unsigned type holding it.
_SHAPE_DTYPES: list[np.dtype[Any]] = [
    np.dtype("<u1"),
    np.dtype("<u2"),
    np.dtype("<u4"),
    np.dtype("<u8"),
]
_NAMES = {np.dtype("<u2"): "uint16", np.dtype("<i4"): "int32"}


def zstd_compress_bound(size: int) -> int:
    """ZSTD_COMPRESSBOUND from zstd.h: the largest frame zstd can produce for `size` bytes."""
    margin = ((128 << 10) - size) >> 11 if size < (128 << 10) else 0
    return size + (size >> 8) + margin


class MDSWriter(ExportWriter):
    """Write documents as MDS samples with a `tokens` column and optionally a `text` column."""

    def __init__(
        self,
        directory: Path,
        vocab_size: int,
        with_text: bool = False,
        size_limit: int = DEFAULT_SIZE_LIMIT,
        zstd_level: int = DEFAULT_ZSTD_LEVEL,
    ) -> None:
        if not 1 <= zstd_level <= 22:
            raise ValueError(f"zstd_level must be between 1 and 22, got {zstd_level}")
        if zstd_compress_bound(size_limit) >= MAX_COMPRESSED_SHARD_BYTES:
            raise ValueError(
                f"size_limit {size_limit} could compress to {MAX_COMPRESSED_SHARD_BYTES} bytes "
                "or more in zstd's worst case; keep it under 63.75 MiB"
            )
        self.directory = directory
        self.vocab_size = vocab_size
        self.dtype = mds_token_dtype(vocab_size)
        self.with_text = with_text
        self.size_limit = size_limit
        self.zstd_level = zstd_level
        columns = {"tokens": f"ndarray:{_NAMES[self.dtype]}"}
        if with_text:
            columns["text"] = "str"
        names = sorted(columns)
        self._config: dict[str, Any] = {
            "column_encodings": [columns[name] for name in names],
            "column_names": names,
            # Neither column has a fixed size, so every sample starts with both sizes.
            "column_sizes": [None] * len(names),
            "compression": f"zstd:{zstd_level}",
            "format": "mds",
            "hashes": ["sha256"],
            "size_limit": size_limit,
            "version": 2,
        }
        self._config_json = json.dumps(self._config, sort_keys=True).encode()
        self._compressor = zstandard.ZstdCompressor(level=zstd_level)
        self._samples: list[bytes] = []
        self._shard_bytes = self._empty_shard_bytes
        self._shard_tokens = 0
        self._shards: list[dict[str, Any]] = []
        self._files: list[ExportedFile] = []
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def _empty_shard_bytes(self) -> int:
        # The sample count, the offset past the last sample, and the config.
        return 4 + 4 + len(self._config_json)

    def add_document(self, tokens: Tokens, text: str | None = None) -> None:
        """Append one document as one sample; `text` is required exactly when with_text is."""
        self._check_open()
        if self.with_text != (text is not None):
            raise ValueError(
                "text is required" if self.with_text else "this writer has no text column"
            )
        values = as_token_array(tokens, self.vocab_size, self.dtype)
        columns = {"tokens": _encode_ndarray(values)}
        if text is not None:
            columns["text"] = text.encode("utf-8")
        sample = _encode_sample([columns[name] for name in self._config["column_names"]])
        # Each sample also costs its u32 offset in the shard header.
        cost = len(sample) + 4
        if self._empty_shard_bytes + cost > self.size_limit:
            raise ValueError(
                f"a document of {values.size} tokens does not fit in a {self.size_limit}-byte shard"
            )
        if self._shard_bytes + cost > self.size_limit:
            self._flush_shard()
        self._samples.append(sample)
        self._shard_bytes += cost
        self._shard_tokens += values.size

    def close(self) -> list[ExportedFile]:
        """Write the last shard and index.json; refuses an export with no documents."""
        self._check_open()
        if self._samples:
            self._flush_shard()
        if not self._shards:
            self.abort()
            raise ValueError("an MDS dataset needs at least one document")
        index = self.directory / INDEX_NAME
        index.write_text(json.dumps({"shards": self._shards, "version": 2}, sort_keys=True))
        self.closed = True
        return [*self._files, describe_file(self.directory, index, tokens=0, documents=0)]

    def abort(self) -> None:
        """Delete the shards written so far."""
        for shard in self._shards:
            (self.directory / shard["zip_data"]["basename"]).unlink(missing_ok=True)
        (self.directory / INDEX_NAME).unlink(missing_ok=True)
        self._samples.clear()
        self.closed = True

    def _flush_shard(self) -> None:
        number = len(self._shards)
        raw = _encode_shard(self._samples, self._config_json)
        compressed = self._compressor.compress(raw)
        raw_name = f"shard.{number:05}.mds"
        zip_name = f"{raw_name}.zstd"
        (self.directory / zip_name).write_bytes(compressed)
        zip_sha256 = hashlib.sha256(compressed).hexdigest()
        self._shards.append(
            {
                **self._config,
                "raw_data": {
                    "basename": raw_name,
                    "bytes": len(raw),
                    "hashes": {"sha256": hashlib.sha256(raw).hexdigest()},
                },
                "samples": len(self._samples),
                "zip_data": {
                    "basename": zip_name,
                    "bytes": len(compressed),
                    "hashes": {"sha256": zip_sha256},
                },
            }
        )
        self._files.append(
            ExportedFile(
                path=zip_name,
                bytes=len(compressed),
                sha256=zip_sha256,
                tokens=self._shard_tokens,
                documents=len(self._samples),
            )
        )
        self._samples = []
        self._shard_bytes = self._empty_shard_bytes
        self._shard_tokens = 0


def _encode_ndarray(values: npt.NDArray[Any]) -> bytes:
    """One ndarray of a column whose dtype is fixed and whose shape is not."""
    largest = max(values.shape)
    code = next(i for i, kind in enumerate(_SHAPE_DTYPES) if largest <= np.iinfo(kind).max)
    shape = np.array(values.shape, dtype=_SHAPE_DTYPES[code])
    return bytes([(values.ndim << 2) | code]) + shape.tobytes() + values.tobytes()


def _encode_sample(columns: list[bytes]) -> bytes:
    """Sizes of the (all variable-size) columns, then their bytes."""
    sizes = np.array([len(column) for column in columns], dtype="<u4")
    return sizes.tobytes() + b"".join(columns)


def _encode_shard(samples: list[bytes], config_json: bytes) -> bytes:
    """Sample count, offsets of each sample and of the end, config, samples."""
    head = 4 + 4 * (len(samples) + 1) + len(config_json)
    offsets = np.cumsum([head, *map(len, samples)], dtype=np.int64).astype("<u4")
    count = np.array([len(samples)], dtype="<u4")
    return b"".join([count.tobytes(), offsets.tobytes(), config_json, *samples])
