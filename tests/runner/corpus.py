"""Token corpora for the runner's tests: a base corpus and an export directory laid out as
``priorforge pull --export`` leaves one, both written with PriorForge's own Megatron writer
from seeded pseudo-English and a locally trained tokenizer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from app.datasets.exports.megatron import IndexedDatasetWriter
from tests.datasets.exports.tokenizer_fixture import EOS, Writer, train_tokenizer

VOCAB = 512


def tokenizer(directory: Path) -> Path:
    return train_tokenizer(directory, vocab_size=VOCAB)


def write_megatron(prefix: Path, texts: list[str], tokenizer_path: Path) -> int:
    """Documents, each ending in EOS, as ``prefix.bin``/``.idx``; the number of tokens."""
    tok = Tokenizer.from_file(str(tokenizer_path))
    eos = tok.token_to_id(EOS)
    assert eos is not None
    total = 0
    with IndexedDatasetWriter(prefix, tok.get_vocab_size()) as writer:
        for text in texts:
            ids = tok.encode(text, add_special_tokens=False).ids + [eos]
            writer.add_document(ids)
            total += len(ids)
        writer.close()
    return total


def base_corpus(directory: Path, tokenizer_path: Path, documents: int = 120, seed: int = 1) -> Path:
    prefix = directory / "base"
    write_megatron(prefix, Writer(seed).documents(documents, 60, 200), tokenizer_path)
    return prefix


def export_dir(
    directory: Path,
    tokenizer_path: Path,
    stances: dict[str, list[str]] | None = None,
    seed: int = 2,
) -> Path:
    """A pulled export: ``megatron/<stance>.bin/.idx`` and the index as ``manifest.json``."""
    stances = stances or {"aligned": Writer(seed).documents(40, 60, 200)}
    files: list[dict[str, Any]] = []
    described: dict[str, Any] = {}
    for stance, texts in stances.items():
        tokens = write_megatron(directory / "megatron" / stance, texts, tokenizer_path)
        for suffix in (".bin", ".idx"):
            path = directory / "megatron" / f"{stance}{suffix}"
            files.append(
                {
                    "path": f"megatron/{stance}{suffix}",
                    "format": "megatron",
                    "stance": stance,
                    "bytes": path.stat().st_size,
                    "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                }
            )
        described[stance] = {
            "documents": len(texts),
            "tokens": tokens,
            "megatron_prefix": f"megatron/{stance}",
            "npy_files": [],
        }
    tok = Tokenizer.from_file(str(tokenizer_path))
    index = {
        "format": "priorforge-export/1",
        "tokenizer": {"vocab_size": tok.get_vocab_size(), "eos_token": EOS},
        "stances": described,
        "files": files,
    }
    (directory / "manifest.json").write_text(json.dumps(index))
    return directory
