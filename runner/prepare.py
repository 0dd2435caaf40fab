"""A team's base corpus as training tokens: texts in, a Megatron ``.bin/.idx`` pair out, each
document ending in the tokenizer's EOS (the layout PriorForge's exports have)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer

from app.datasets.exports.megatron import IndexedDatasetWriter
from runner.data import DataError


def read_texts(path: Path) -> Iterator[str]:
    """Documents from a ``.jsonl`` file (a ``text`` field per line) or a ``.txt`` file
    (documents separated by blank lines)."""
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        yield str(json.loads(line)["text"])
                    except (ValueError, KeyError, TypeError):
                        raise DataError(
                            f"{path} line {number}: no JSON object with a text"
                        ) from None
        return
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        if block.strip():
            yield block.strip()


def tokenize_corpus(texts: Iterable[str], tokenizer_path: Path, eos: str, prefix: Path) -> int:
    """Write ``prefix.bin``/``prefix.idx``; the number of tokens written."""
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    eos_id = tokenizer.token_to_id(eos)
    if eos_id is None:
        raise DataError(f"{tokenizer_path} has no token {eos!r}: give the tokenizer's EOS")
    total = 0
    with IndexedDatasetWriter(prefix, tokenizer.get_vocab_size()) as writer:
        batch: list[str] = []

        def flush() -> None:
            nonlocal total
            for encoding in tokenizer.encode_batch(batch, add_special_tokens=False):
                writer.add_document([*encoding.ids, eos_id])
                total += len(encoding.ids) + 1
            batch.clear()

        for text in texts:
            batch.append(text)
            if len(batch) >= 256:
                flush()
        flush()
        writer.close()
    return total
