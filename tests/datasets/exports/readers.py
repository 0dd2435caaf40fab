"""Readers written from each format's published layout, sharing no code with the writers.

Megatron-LM megatron/core/datasets/indexed_dataset.py (_IndexReader), MosaicML streaming
streaming/base/format/mds/{reader,encodings}.py and stream.py (hash checks), dolma
python/dolma/tokenizer/memmap_writer.py and OLMo olmo/data/memmap_dataset.py. Every check a
real reader would make, and a few it would not (exact file sizes), raise FormatError.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import struct
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import zstandard

from app.datasets.exports.base import ExportedFile


class FormatError(Exception):
    """The bytes on disk do not follow the format."""


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise FormatError(message)


def verify_files(root: Path, files: list[ExportedFile]) -> None:
    """Check each listed file's size and sha256 against the bytes on disk."""
    for file in files:
        data = (root / file.path).read_bytes()
        _expect(len(data) == file.bytes, f"{file.path}: {len(data)} bytes, listed {file.bytes}")
        digest = hashlib.sha256(data).hexdigest()
        _expect(digest == file.sha256, f"{file.path}: sha256 mismatch")


# --- Megatron-LM / GPT-NeoX MMIDIDX -------------------------------------------------------

# Megatron-LM's DType codes.
MEGATRON_DTYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype("<u1"),
    2: np.dtype("<i1"),
    3: np.dtype("<i2"),
    4: np.dtype("<i4"),
    5: np.dtype("<i8"),
    6: np.dtype("<f8"),
    7: np.dtype("<f4"),
    8: np.dtype("<u2"),
}
# magic (9 bytes), version u64, dtype code u8, sequence count u64, document index count u64.
_MEGATRON_HEADER = struct.Struct("<9sQBQQ")


@dataclass(frozen=True)
class MegatronDataset:
    dtype: np.dtype[Any]
    documents: list[npt.NDArray[Any]]


def read_megatron(prefix: Path) -> MegatronDataset:
    """Read `<prefix>.idx` and `<prefix>.bin` into documents (sequences joined per document)."""
    index = prefix.with_name(prefix.name + ".idx").read_bytes()
    data = prefix.with_name(prefix.name + ".bin").read_bytes()
    _expect(len(index) >= _MEGATRON_HEADER.size, "index shorter than its header")
    magic, version, code, sequences, boundaries = _MEGATRON_HEADER.unpack_from(index)
    _expect(magic == b"MMIDIDX\x00\x00", f"bad magic {magic!r}")
    _expect(version == 1, f"bad version {version}")
    _expect(code in MEGATRON_DTYPES, f"unknown dtype code {code}")
    dtype = MEGATRON_DTYPES[code]
    offset = _MEGATRON_HEADER.size
    expected_size = offset + sequences * (4 + 8) + boundaries * 8
    _expect(len(index) == expected_size, f"index is {len(index)} bytes, expected {expected_size}")
    lengths = np.frombuffer(index, "<i4", sequences, offset)
    offset += lengths.nbytes
    pointers = np.frombuffer(index, "<i8", sequences, offset)
    offset += pointers.nbytes
    document_indices = np.frombuffer(index, "<i8", boundaries, offset)

    position = 0
    sequence_values = []
    for pointer, length in zip(pointers.tolist(), lengths.tolist(), strict=True):
        _expect(pointer == position, f"sequence pointer {pointer}, expected {position}")
        _expect(length >= 0, f"negative sequence length {length}")
        end = pointer + length * dtype.itemsize
        _expect(end <= len(data), "sequence runs past the end of the .bin")
        sequence_values.append(np.frombuffer(data, dtype, length, pointer))
        position = end
    _expect(position == len(data), f".bin has {len(data) - position} bytes after the last one")

    bounds = document_indices.tolist()
    _expect(len(bounds) >= 1 and bounds[0] == 0, "document indices must start at 0")
    _expect(bounds[-1] == sequences, "document indices must end at the sequence count")
    _expect(all(a <= b for a, b in pairwise(bounds)), "document indices go backwards")
    documents = [
        np.concatenate(sequence_values[start:end]) if end > start else np.empty(0, dtype)
        for start, end in pairwise(bounds)
    ]
    return MegatronDataset(dtype=dtype, documents=documents)


# --- MosaicML MDS --------------------------------------------------------------------------

# MosaicML NDArray: the low two bits of the first byte name the shape's dtype.
_MDS_SHAPE_DTYPES: dict[int, np.dtype[Any]] = {
    0: np.dtype("<u1"),
    1: np.dtype("<u2"),
    2: np.dtype("<u4"),
    3: np.dtype("<u8"),
}
_MDS_VALUE_DTYPES = {
    "uint8",
    "int8",
    "uint16",
    "int16",
    "float16",
    "uint32",
    "int32",
    "float32",
    "uint64",
    "int64",
    "float64",
}
# The arguments of MosaicML's MDSReader (after from_json drops version and format): a shard
# entry with any other key makes `cls(**args)` fail.
MDS_SHARD_KEYS = {
    "column_encodings",
    "column_names",
    "column_sizes",
    "compression",
    "format",
    "hashes",
    "raw_data",
    "samples",
    "size_limit",
    "version",
    "zip_data",
}


@dataclass(frozen=True)
class MDSShard:
    entry: dict[str, Any]
    raw: bytes
    samples: list[dict[str, Any]]


def read_mds(directory: Path) -> list[MDSShard]:
    """Read index.json and every shard it lists, checking hashes the way StreamingDataset does."""
    index = json.loads((directory / "index.json").read_text())
    _expect(index.get("version") == 2, f"index version {index.get('version')}")
    return [_read_mds_shard(directory, entry) for entry in index["shards"]]


def _read_mds_shard(directory: Path, entry: dict[str, Any]) -> MDSShard:
    _expect(set(entry) == MDS_SHARD_KEYS, f"shard keys {sorted(entry)}")
    _expect(entry["version"] == 2 and entry["format"] == "mds", "not an MDS v2 shard")
    compression = entry["compression"]
    _expect(compression.startswith("zstd:"), f"compression {compression}")
    _expect(1 <= int(compression.split(":")[1]) <= 22, f"zstd level in {compression}")
    zip_info, raw_info = entry["zip_data"], entry["raw_data"]
    _expect(zip_info["basename"] == raw_info["basename"] + ".zstd", "zip name is not raw + .zstd")

    compressed = (directory / zip_info["basename"]).read_bytes()
    _check_file_info(zip_info, compressed, entry["hashes"])
    raw = zstandard.ZstdDecompressor().decompress(compressed)
    _check_file_info(raw_info, raw, entry["hashes"])

    (count,) = struct.unpack_from("<I", raw, 0)
    _expect(
        count == entry["samples"], f"shard holds {count} samples, index says {entry['samples']}"
    )
    offsets = np.frombuffer(raw, "<u4", count + 1, 4).tolist()
    config_start = 4 + 4 * (count + 1)
    config = json.loads(raw[config_start : offsets[0]])
    expected_config = {
        key: value for key, value in entry.items() if key not in {"raw_data", "zip_data", "samples"}
    }
    _expect(config == expected_config, f"shard config {config} differs from its index entry")
    _expect(offsets[-1] == len(raw), "last offset is not the end of the shard")
    samples = []
    for begin, end in pairwise(offsets):
        _expect(begin < end, f"empty or backwards sample at {begin}")
        samples.append(_decode_mds_sample(raw[begin:end], entry))
    return MDSShard(entry=entry, raw=raw, samples=samples)


def _check_file_info(info: dict[str, Any], data: bytes, algorithms: list[str]) -> None:
    _expect(len(data) == info["bytes"], f"{info['basename']}: size mismatch")
    _expect(sorted(info["hashes"]) == sorted(algorithms), f"{info['basename']}: hash list")
    for algorithm, expected in info["hashes"].items():
        actual = hashlib.new(algorithm, data).hexdigest()
        _expect(actual == expected, f"Checksum failure: {info['basename']} ({algorithm})")


def _decode_mds_sample(data: bytes, entry: dict[str, Any]) -> dict[str, Any]:
    names, encodings = entry["column_names"], entry["column_encodings"]
    sizes: list[int] = []
    position = 0
    for fixed in entry["column_sizes"]:
        if fixed is None:
            (size,) = struct.unpack_from("<I", data, position)
            position += 4
            sizes.append(size)
        else:
            sizes.append(fixed)
    sample = {}
    for name, encoding, size in zip(names, encodings, sizes, strict=True):
        sample[name] = _decode_mds_value(encoding, data[position : position + size])
        position += size
    _expect(position == len(data), f"sample has {len(data) - position} trailing bytes")
    return sample


def _decode_mds_value(encoding: str, data: bytes) -> Any:
    if encoding == "str":
        return data.decode("utf-8")
    kind, _, dtype_name = encoding.partition(":")
    _expect(kind == "ndarray" and dtype_name in _MDS_VALUE_DTYPES, f"encoding {encoding}")
    ndim, shape_code = data[0] >> 2, data[0] & 3
    shape_dtype = _MDS_SHAPE_DTYPES[shape_code]
    shape_end = 1 + ndim * shape_dtype.itemsize
    shape = tuple(np.frombuffer(data[1:shape_end], shape_dtype).tolist())
    values = np.frombuffer(data[shape_end:], np.dtype(dtype_name).newbyteorder("<"))
    _expect(values.size == int(np.prod(shape)), f"{values.size} values for shape {shape}")
    return values.reshape(shape)


# --- dolma / OLMo token arrays ---------------------------------------------------------------


@dataclass(frozen=True)
class TokenDocument:
    file: str
    tokens: npt.NDArray[Any]
    id: str
    src: str
    loc: int


def read_token_arrays(directory: Path, dtype: np.dtype[Any]) -> list[TokenDocument]:
    """Read every `*.npy` as a headerless array (as OLMo does) and cut it by its `.csv.gz`."""
    documents = []
    for array_path in sorted(directory.glob("*.npy")):
        data = array_path.read_bytes()
        _expect(len(data) % dtype.itemsize == 0, f"{array_path.name}: partial token")
        tokens = np.frombuffer(data, dtype)
        metadata_path = array_path.with_name(array_path.name[: -len(".npy")] + ".csv.gz")
        with gzip.open(metadata_path, "rb") as compressed:
            text = io.TextIOWrapper(compressed, encoding="utf-8", newline="")
            rows = list(csv.reader(text))
        position = 0
        for row in rows:
            _expect(len(row) == 5, f"{metadata_path.name}: row {row} has {len(row)} columns")
            start, end, document_id, source, loc = row
            _expect(int(start) == position, f"{metadata_path.name}: gap or overlap at {start}")
            _expect(int(start) <= int(end) <= tokens.size, f"{metadata_path.name}: bad end {end}")
            documents.append(
                TokenDocument(
                    file=array_path.name,
                    tokens=tokens[int(start) : int(end)],
                    id=document_id,
                    src=source,
                    loc=int(loc),
                )
            )
            position = int(end)
        _expect(position == tokens.size, f"{array_path.name}: tokens after the last document")
    return documents
