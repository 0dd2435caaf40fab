"""Read a pulled dataset version the way HF datasets or datatrove users do, and write what the
reader yields as JSON lines, for tests/datasets/test_interop.py to compare with the files.

Runs inside the interop virtualenv (``.venv/interop``; ``make test`` builds it), never the
main one: these libraries conflict with PriorForge's own dependencies.

    read_version.py hf OUT FILE...             one line per row, in the order datasets yields them
    read_version.py datatrove OUT FOLDER GLOB  one line per document: {"id", "text", "metadata"}
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _write(out: Path, rows: Iterable[dict[str, Any]]) -> None:
    with out.open("w", encoding="utf-8") as sink:
        for row in rows:
            # default=repr: a value the reader turned into something else than JSON (a
            # timestamp, bytes) is written as its repr, so that it differs from the original
            # instead of failing here.
            sink.write(json.dumps(row, ensure_ascii=False, default=repr) + "\n")


def read_hf(out: Path, files: list[str]) -> None:
    from datasets import load_dataset  # type: ignore[import-not-found]

    with tempfile.TemporaryDirectory(prefix="interop-hf-cache-") as cache:
        dataset = load_dataset("json", data_files=files, split="train", cache_dir=cache)
        _write(out, (dict(row) for row in dataset))


def read_datatrove(out: Path, folder: str, glob: str) -> None:
    # The reader's defaults (compression "infer", the default adapter): what a user gets.
    from datatrove.pipeline.readers import JsonlReader  # type: ignore[import-not-found]

    reader = JsonlReader(folder, glob_pattern=glob)
    _write(
        out,
        ({"id": doc.id, "text": doc.text, "metadata": doc.metadata} for doc in reader.run()),
    )


def main(argv: list[str]) -> None:
    command, out, *rest = argv
    if command == "hf":
        read_hf(Path(out), rest)
    elif command == "datatrove":
        folder, glob = rest
        read_datatrove(Path(out), folder, glob)
    else:
        raise SystemExit(f"unknown reader {command!r}: hf or datatrove")


if __name__ == "__main__":
    main(sys.argv[1:])
