"""Packing a stance's documents into version files near a target size. Pure apart from
temporary files.

A version file is one zstd frame of JSON lines whose header carries the uncompressed size
(readers can allocate once; ``zstd -l`` shows it), holding a contiguous range of the
stance's positions in order. The same documents in the same order always give the same
bytes, so a re-packed file that did not change keeps its name (its sha256).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from app.datasets.shards import json_line

ZSTD_LEVEL = 10


@dataclass(frozen=True)
class PackedFile:
    stance: str
    first: int  # the position of its first document
    records: int
    path: Path  # a temporary file, the caller uploads and deletes it
    sha256: str
    bytes: int
    uncompressed_bytes: int
    characters: int

    @property
    def end(self) -> int:
        """One past the position of its last document."""
        return self.first + self.records


def pack(
    documents: Iterable[tuple[int, dict[str, Any]]],
    *,
    stance: str,
    target_bytes: int,
    directory: Path,
) -> Iterator[PackedFile]:
    """Cut ``(position, record)`` pairs, in position order, into files of about
    ``target_bytes`` uncompressed: a file closes before the record that would take it past
    the target, so only a single record larger than the target makes a larger file."""
    staging: BinaryIO | None = None
    first = size = count = characters = 0
    try:
        for position, record in documents:
            if count and position != first + count:
                raise ValueError(
                    f"positions must be contiguous: {position} follows {first + count - 1}"
                )
            line = json_line(record)
            if staging is not None and size + len(line) > target_bytes:
                staging.close()
                staging = None
                yield _compress(directory, stance, first, count, size, characters)
            if staging is None:
                first, size, count, characters = position, 0, 0, 0
                staging = _raw(directory, stance, first).open("wb")
            staging.write(line)
            size += len(line)
            count += 1
            characters += len(record["text"])
        if staging is not None:
            staging.close()
            staging = None
            yield _compress(directory, stance, first, count, size, characters)
    finally:
        if staging is not None:  # stopped midway: leave no open file behind
            staging.close()


def _raw(directory: Path, stance: str, first: int) -> Path:
    return directory / f"{stance}-{first:010d}.jsonl"


def _compress(
    directory: Path, stance: str, first: int, records: int, size: int, characters: int
) -> PackedFile:
    raw = _raw(directory, stance, first)
    target = raw.with_suffix(".jsonl.zst")
    digest = hashlib.sha256()
    compressor = zstandard.ZstdCompressor(
        level=ZSTD_LEVEL, write_checksum=True, write_content_size=True
    )
    with raw.open("rb") as source, target.open("wb") as out:
        hashing = _Hashing(out, digest)
        compressor.copy_stream(source, hashing, size=size)  # type: ignore[arg-type]  # writes only
    raw.unlink()
    return PackedFile(
        stance=stance,
        first=first,
        records=records,
        path=target,
        sha256=digest.hexdigest(),
        bytes=target.stat().st_size,
        uncompressed_bytes=size,
        characters=characters,
    )


class _Hashing:
    """A write-only file that hashes what passes through it."""

    def __init__(self, target: BinaryIO, digest: Any) -> None:
        self.target = target
        self.digest = digest

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.target.write(data)
