"""Checkpoints that resume exactly: model, optimizer, step, sample cursor, every RNG, and what
the run was (config, data and mixture hashes, code version)."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

RUNNER_DIR = Path(__file__).resolve().parent


def code_version() -> str:
    """sha256 over the runner's own source files: a resume on other code is refused."""
    digest = hashlib.sha256()
    for path in sorted(RUNNER_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a checkpoint is either whole or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load(path: Path) -> dict[str, Any]:
    # weights_only=False: the state holds RNG tuples and numpy arrays of our own writing.
    return torch.load(path, map_location="cpu", weights_only=False)  # type: ignore[no-any-return]
