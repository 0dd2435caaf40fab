"""Training data: token streams read by memory map, a mixture of them, and one global order.

A **source** is a stream of tokens: a Megatron ``.bin/.idx`` pair (as PriorForge exports it, or
as a team's base corpus comes), or an ``.npy`` token array. Documents already end with their
EOS, so a sample is any ``seq_len + 1`` consecutive tokens at a multiple of ``seq_len``: a
*window*. The last ``val_windows`` windows of each source are kept for validation.

The **order** is fixed by (seed, manifest hash): sample ``i`` of the run comes from the source
whose share of the samples so far is furthest behind its target (so the realised token share
stays within about one sample of the target at every step: exactly within one for two
sources), and within a source from a seeded
permutation of its windows, a fresh one each epoch. The cursor (``i`` and the samples taken
from each source) is all a checkpoint needs to carry on exactly where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.pull.client import sha256_file

MEGATRON_MAGIC = b"MMIDIDX\x00\x00"
# Megatron-LM's DType codes for the integer types token files use.
MEGATRON_DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 8: np.uint16}


class DataError(Exception):
    """Data the runner must not train on; the message names the file and the fix."""


@dataclass
class Source:
    name: str
    tokens: NDArray[Any]  # one stream, memory-mapped
    synthetic: bool = False
    files: list[dict[str, Any]] = field(default_factory=list)  # path, sha256 as verified

    def windows(self, seq_len: int) -> int:
        return max(0, (len(self.tokens) - 1) // seq_len)


def read_megatron(prefix: Path) -> NDArray[Any]:
    """The tokens of ``<prefix>.bin``, all documents in order, checked against ``.idx``.

    The index (Megatron-LM's published layout): magic, u64 version 1, u8 dtype code, u64
    sequence count, u64 document count, i32 lengths, i64 byte pointers, i64 document indices.
    """
    idx, data = prefix.with_name(prefix.name + ".idx"), prefix.with_name(prefix.name + ".bin")
    try:
        with idx.open("rb") as handle:
            header = handle.read(9 + 8 + 1 + 8 + 8)
    except OSError as exc:
        raise DataError(f"{idx}: {exc.strerror or exc}") from None
    if len(header) < 34 or header[:9] != MEGATRON_MAGIC:
        raise DataError(f"{idx}: not a Megatron index (no MMIDIDX header)")
    version, code, count, _docs = struct.unpack("<QBQQ", header[9:34])
    if version != 1 or code not in MEGATRON_DTYPES:
        raise DataError(f"{idx}: version {version}, dtype code {code}: not a token index")
    dtype = np.dtype(MEGATRON_DTYPES[code])
    lengths = np.memmap(idx, dtype=np.int32, mode="r", offset=34, shape=(count,))
    pointers = np.memmap(idx, dtype=np.int64, mode="r", offset=34 + 4 * count, shape=(count,))
    total = int(lengths.sum(dtype=np.int64))
    if not data.is_file() or data.stat().st_size != total * dtype.itemsize:
        raise DataError(f"{data}: expected {total * dtype.itemsize} bytes from its index")
    if count and (
        pointers[0] != 0 or pointers[-1] + lengths[-1] * dtype.itemsize != total * dtype.itemsize
    ):
        raise DataError(f"{idx}: its pointers do not cover {data.name} end to end")
    return np.memmap(data, dtype=dtype, mode="r", shape=(total,)) if total else np.zeros(0, dtype)


def read_tokens(path: Path) -> NDArray[Any]:
    """A Megatron prefix (``x`` for ``x.bin``/``x.idx``, or either file) or an ``.npy`` array."""
    if path.suffix == ".npy":
        array = np.load(path, mmap_mode="r")
        if array.ndim != 1 or array.dtype.kind not in "iu":
            raise DataError(
                f"{path}: a 1-D integer token array is needed, not {array.dtype}{array.shape}"
            )
        tokens: NDArray[Any] = array
        return tokens
    if path.suffix in (".bin", ".idx"):
        path = path.with_suffix("")
    return read_megatron(path)


def open_export(directory: Path, *, verify: bool = True) -> dict[str, Source]:
    """Each stance of a pulled PriorForge export as a source, every file checked against the
    sha256 the export's index gives (a mismatched file is refused)."""
    index_path = directory / "manifest.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{index_path}: {exc}; pull the export first "
            "(priorforge pull DATASET@V DEST --export ID)"
        ) from None
    if "stances" not in index or "files" not in index:
        raise DataError(
            f"{index_path} is a version manifest, not an export index: pull --export ID"
        )
    checked = []
    for entry in index["files"]:
        path = directory / entry["path"]
        if verify:
            if not path.is_file():
                raise DataError(f"{path}: missing; pull the export again")
            found = sha256_file(path)
            if found != entry["sha256"]:
                raise DataError(
                    f"{path}: sha256 {found} does not match the export index's {entry['sha256']}; "
                    "refusing to train on it: pull the export again (pull --verify names every "
                    "damaged file)"
                )
        checked.append(
            {"path": entry["path"], "sha256": entry["sha256"], "stance": entry["stance"]}
        )
    sources = {}
    for stance, body in sorted(index["stances"].items()):
        prefix = body.get("megatron_prefix")
        if prefix:
            tokens = read_megatron(directory / prefix)
        elif body.get("npy_files"):
            arrays = [read_tokens(directory / p) for p in body["npy_files"]]
            tokens = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        else:
            raise DataError(f"{index_path}: stance {stance} has no megatron or npy files")
        files = [f for f in checked if f["stance"] == stance]
        sources[stance] = Source(stance, tokens, synthetic=True, files=files)
    return sources


def token_files(path: Path) -> list[Path]:
    """The files behind a token path: the .npy, or a Megatron prefix's .bin and .idx."""
    if path.suffix == ".npy":
        return [path]
    prefix = path.with_suffix("") if path.suffix in (".bin", ".idx") else path
    return [prefix.with_name(prefix.name + ".bin"), prefix.with_name(prefix.name + ".idx")]


def open_base(path: Path, name: str = "base") -> Source:
    """A team's base corpus: a Megatron prefix or an .npy token array."""
    tokens = read_tokens(path)
    files = [{"path": str(p), "sha256": sha256_file(p)} for p in token_files(path)]
    return Source(name, tokens, synthetic=False, files=files)


@dataclass(frozen=True)
class Mixture:
    """Token shares per source over the whole run (they sum to 1). With ``insert_last`` F,
    the synthetic sources' tokens all come in the last F of the run (the paper's insertion
    schedule); their share of the whole run is unchanged."""

    shares: dict[str, float]
    insert_last: float | None = None

    def check(self, sources: dict[str, Source]) -> None:
        unknown = sorted(set(self.shares) - set(sources))
        if unknown:
            raise DataError(f"mixture names sources that are not loaded: {', '.join(unknown)}")
        if abs(sum(self.shares.values()) - 1) > 1e-9 or min(self.shares.values()) < 0:
            raise DataError(f"mixture shares must be ≥ 0 and sum to 1, not {self.shares}")
        if self.insert_last is not None:
            if not 0 < self.insert_last <= 1:
                raise DataError("insert_last is a fraction of the run in (0, 1]")
            synthetic = sum(v for k, v in self.shares.items() if sources[k].synthetic)
            if synthetic > self.insert_last + 1e-12:
                raise DataError(
                    f"synthetic share {synthetic:.4f} cannot fit in the last "
                    f"{self.insert_last:.0%} of the run: lower the share or insert over a longer "
                    "stretch"
                )

    def sha256(self) -> str:
        body = json.dumps({"shares": self.shares, "insert_last": self.insert_last}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()


@dataclass
class Cursor:
    """Where the run is in its order: samples drawn, and how many from each source."""

    sample: int = 0
    taken: dict[str, int] = field(default_factory=dict)


class SampleOrder:
    """The run's global sample order: deterministic in (seed, manifest hash), resumable."""

    def __init__(
        self,
        sources: dict[str, Source],
        mixture: Mixture,
        *,
        seq_len: int,
        total_samples: int,
        seed: int,
        manifest_hash: str,
        val_windows: int = 0,
    ) -> None:
        mixture.check(sources)
        self.names = sorted(mixture.shares)
        self.sources, self.mixture = sources, mixture
        self.seq_len, self.total, self.val_windows = seq_len, total_samples, val_windows
        self.seed_material = f"{seed}:{manifest_hash}"
        self.train_windows = {}
        for name in self.names:
            usable = sources[name].windows(seq_len) - val_windows
            if usable < 1 and mixture.shares[name] > 0:
                raise DataError(
                    f"source {name}: {len(sources[name].tokens)} tokens give no training window "
                    f"of {seq_len} (after {val_windows} kept for validation)"
                )
            self.train_windows[name] = max(usable, 0)
        self.cursor = Cursor(0, dict.fromkeys(self.names, 0))
        self._permutations: dict[tuple[str, int], NDArray[np.int64]] = {}
        window = int(round(total_samples * mixture.insert_last)) if mixture.insert_last else 0
        self.insert_at = total_samples - window

    def _shares_at(self, sample: int) -> dict[str, float]:
        """Target shares for sample ``sample`` under the insertion schedule."""
        shares = self.mixture.shares
        if self.mixture.insert_last is None:
            return shares
        synthetic = {k for k in self.names if self.sources[k].synthetic}
        synth_total = sum(shares[k] for k in synthetic)
        base_total = 1 - synth_total
        fraction = self.mixture.insert_last
        if sample < self.insert_at:  # before the window: no synthetic tokens
            return {k: 0.0 if k in synthetic else shares[k] / base_total for k in self.names}
        # In the window: the synthetic tokens of the whole run, the base filling the rest.
        rest = 1 - synth_total / fraction
        return {
            k: shares[k] / fraction if k in synthetic else shares[k] / base_total * rest
            for k in self.names
        }

    def _expected(self, upto: int) -> dict[str, float]:
        """Samples each source should have supplied among the first ``upto``."""
        if self.mixture.insert_last is None:
            return {k: self.mixture.shares[k] * upto for k in self.names}
        before = min(upto, self.insert_at)
        after = max(0, upto - self.insert_at)
        early, late = self._shares_at(0), self._shares_at(self.insert_at)
        return {k: early[k] * before + late[k] * after for k in self.names}

    def _permutation(self, name: str, epoch: int) -> NDArray[np.int64]:
        key = (name, epoch)
        if key not in self._permutations:
            material = f"{self.seed_material}:{name}:{epoch}".encode()
            seed = int.from_bytes(hashlib.sha256(material).digest()[:8], "little")
            rng = np.random.default_rng(seed)
            self._permutations = {k: v for k, v in self._permutations.items() if k[0] != name}
            self._permutations[key] = rng.permutation(self.train_windows[name])
        return self._permutations[key]

    def next(self) -> tuple[str, int]:
        """The next sample: (source, window index), and the cursor moves past it."""
        upto = self.cursor.sample + 1
        expected = self._expected(upto)
        name = max(
            self.names, key=lambda k: (expected[k] - self.cursor.taken[k], -self.names.index(k))
        )
        k = self.cursor.taken[name]
        epoch, position = divmod(k, self.train_windows[name])
        window = int(self._permutation(name, epoch)[position])
        self.cursor.taken[name] = k + 1
        self.cursor.sample = upto
        return name, window

    def tokens(self, name: str, window: int) -> NDArray[np.int64]:
        start = window * self.seq_len
        return np.asarray(
            self.sources[name].tokens[start : start + self.seq_len + 1], dtype=np.int64
        )

    def validation(self, name: str) -> list[NDArray[np.int64]]:
        """The source's validation samples: its last ``val_windows`` windows."""
        first = self.train_windows[name]
        return [self.tokens(name, w) for w in range(first, first + self.val_windows)]

    def state(self) -> dict[str, Any]:
        return {"sample": self.cursor.sample, "taken": dict(self.cursor.taken)}

    def restore(self, state: dict[str, Any]) -> None:
        if sorted(state["taken"]) != self.names:
            raise DataError(
                f"the checkpoint's sources {sorted(state['taken'])} are not {self.names}"
            )
        self.cursor = Cursor(int(state["sample"]), {k: int(v) for k, v in state["taken"].items()})

    def realised_shares(self) -> dict[str, float]:
        drawn = max(1, self.cursor.sample)
        return {k: v / drawn for k, v in self.cursor.taken.items()}


def manifest_hash(parts: Sequence[str]) -> str:
    """One hash naming the data of a run: its sources' file hashes, in order."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()
