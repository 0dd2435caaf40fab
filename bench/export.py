"""Export tokenizing: tokens/s per core against tokenizers' own batch encoding, same run.

A seeded pseudo-English corpus (documents of 500 to 1500 Zipf-distributed words) and a
byte-level BPE trained on other documents of the same pseudo-language
(tests/datasets/exports/tokenizer_fixture.py).

1. Baselines in this process: ``Tokenizer.encode_batch`` with TOKENIZERS_PARALLELISM=false
   (one core: the per-core reference), ``encode_batch_fast`` likewise, and ``encode_batch``
   with tokenizers' Rust pool on (RAYON_NUM_THREADS threads).
2. ``ParallelTokenizer`` with 1, 2, 4, ... processes and one per core. Workers are started and
   warmed before the clock starts; their start-up is printed apart.
3. The most processes again with tokenizers' pool left on inside each worker (is
   TOKENIZERS_PARALLELISM=false in workers right?).
4. The export path: the most processes feeding ``IndexedDatasetWriter`` (.bin + .idx, file
   hashes included), and the writer alone on tokens already in memory.

Two per-core figures: wall tokens/s over the cores used, which drops when another program
holds a core; and tokens per CPU-second of this process and its workers (from /proc, so
Linux only), which does not. `ratio` divides tokens per CPU-second by the one-core
``encode_batch``'s. Each row is the run with the best wall time of --repeats.

    python bench/export.py [--megabytes 20] [--vocab 32000] [--processes 1,2] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Read once, when tokenizers first starts its pool: set before anything can start it.
os.environ.setdefault("RAYON_NUM_THREADS", str(os.cpu_count() or 1))

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

from app.datasets.exports.megatron import IndexedDatasetWriter  # noqa: E402
from app.datasets.exports.tokenize import (  # noqa: E402
    ParallelTokenizer,
    TokenizerFile,
    load_tokenizer,
)
from tests.datasets.exports.tokenizer_fixture import EOS, Writer, train_tokenizer  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and its children, the workers: live ones from
    /proc, finished ones from rusage (a worker counted live before and reaped after counts
    once in a difference)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = time.process_time() + children.ru_utime + children.ru_stime
    me = os.getpid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # After the parenthesised command: state, ppid, ... utime and stime 11th and 12th.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        if int(fields[1]) == me:
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


@dataclass
class Timing:
    wall: float
    cpu: float


def best_of(repeats: int, run: Callable[[], object]) -> Timing:
    """The run with the best wall time: the machine is shared, the code is not slower."""
    best = Timing(float("inf"), float("inf"))
    for _ in range(repeats):
        started, used = time.perf_counter(), cpu_seconds()
        run()
        timing = Timing(time.perf_counter() - started, cpu_seconds() - used)
        if timing.wall < best.wall:
            best = timing
    return best


def parallelism(enabled: bool) -> None:
    """tokenizers reads this on every batch call, so it can change between measurements."""
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if enabled else "false"


class Table:
    def __init__(self, tokens: int, megabytes: float) -> None:
        self.tokens = tokens
        self.megabytes = megabytes
        self.reference = 0.0  # tokens per CPU-second of one-core encode_batch, the first row
        print(
            f"{'':50} {'cores':>5} {'tokens/s':>11} {'MB/s':>6} {'wall/core':>11} "
            f"{'per CPU-s':>11} {'ratio':>6}"
        )

    def row(self, label: str, cores: int, timing: Timing) -> None:
        rate = self.tokens / timing.wall
        per_cpu = self.tokens / timing.cpu
        self.reference = self.reference or per_cpu
        print(
            f"{label:50} {cores:5d} {rate:11,.0f} {self.megabytes / timing.wall:6.1f} "
            f"{rate / cores:11,.0f} {per_cpu:11,.0f} {per_cpu / self.reference:6.2f}"
        )


def run_parallel(
    checked: TokenizerFile,
    texts: list[str],
    processes: int,
    batch_size: int,
    repeats: int,
    pool_parallelism: bool = False,
    export: bool = False,
) -> tuple[float, Timing]:
    """Seconds to start and warm the workers, and the best timing of the whole corpus:
    encoded only, or (`export`) written to a Megatron .bin/.idx as well."""
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="priorforge-bench-") as directory,
        ParallelTokenizer(
            checked,
            processes=processes,
            batch_size=batch_size,
            tokenizers_parallelism=pool_parallelism,
        ) as parallel,
    ):
        # Enough batches to start every worker and fill its word cache.
        for _ in parallel.encode(texts[: 2 * processes * batch_size]):
            pass
        warm = time.perf_counter() - started

        def encode() -> None:
            for _ in parallel.encode(texts):
                pass

        def encode_and_write() -> None:
            # Hashing the finished files (close) is part of an export; it is timed too.
            with IndexedDatasetWriter(Path(directory) / "corpus", parallel.vocab_size) as writer:
                for tokens in parallel.encode(texts):
                    writer.add_document(tokens)
                writer.close()

        return warm, best_of(repeats, encode_and_write if export else encode)


def write_only(arrays: list[npt.NDArray[np.uint32]], vocab_size: int, repeats: int) -> Timing:
    def write() -> None:
        with (
            tempfile.TemporaryDirectory(prefix="priorforge-bench-") as directory,
            IndexedDatasetWriter(Path(directory) / "corpus", vocab_size) as writer,
        ):
            for tokens in arrays:
                writer.add_document(tokens)
            writer.close()

    return best_of(repeats, write)


def process_counts(cores: int) -> list[int]:
    counts = [1]
    while counts[-1] * 2 < cores:
        counts.append(counts[-1] * 2)
    return counts + [cores] if cores > 1 else counts


def main() -> None:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=20.0, help="corpus size")
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--train-megabytes", type=float, default=5.0, help="BPE training text")
    parser.add_argument(
        "--processes",
        type=lambda value: [int(part) for part in value.split(",")],
        default=process_counts(cores),
        help="comma-separated worker process counts (default 1, 2, 4, ... and the cores)",
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    started = time.perf_counter()
    texts = Writer(args.seed).corpus(args.megabytes)
    generated = time.perf_counter() - started
    megabytes = sum(len(text.encode()) for text in texts) / 1e6

    with tempfile.TemporaryDirectory(prefix="priorforge-bench-") as directory:
        started = time.perf_counter()
        # Other documents than the corpus's, as a real tokenizer never saw what it encodes.
        training = Writer(args.seed + 1).corpus(args.train_megabytes)
        path = train_tokenizer(Path(directory), vocab_size=args.vocab, texts=training)
        trained = time.perf_counter() - started
        checked = load_tokenizer(path.read_bytes(), EOS)

    tokenizer: Tokenizer = checked.tokenizer
    parallelism(False)
    # One pass untimed: counts the tokens and fills the word cache the baselines use.
    encoded = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    tokens = sum(len(encoding.ids) + 1 for encoding in encoded)  # + 1: the EOS
    words = sum(len(text.split()) for text in texts)
    del encoded
    print(
        f"{len(texts)} documents, {megabytes:.1f} MB, {tokens:,} tokens with EOS "
        f"({(tokens - len(texts)) / words:.2f} a word); vocab {checked.vocab_size}; "
        f"corpus {generated:.1f} s, BPE training {trained:.1f} s"
    )
    print(
        f"{cores} cores (os.cpu_count), load average {os.getloadavg()[0]:.2f} before; "
        f"RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']}; batches of {args.batch_size}; "
        f"best of {args.repeats}"
    )

    # 1. Baselines, in this process.
    table = Table(tokens, megabytes)
    parallelism(False)
    table.row(
        "encode_batch, TOKENIZERS_PARALLELISM=false",
        1,
        best_of(args.repeats, lambda: tokenizer.encode_batch(texts)),
    )
    table.row(
        "encode_batch_fast, TOKENIZERS_PARALLELISM=false",
        1,
        best_of(args.repeats, lambda: tokenizer.encode_batch_fast(texts)),
    )
    parallelism(True)
    threads = int(os.environ["RAYON_NUM_THREADS"])
    table.row(
        f"encode_batch, Rust pool of {threads}",
        min(threads, cores),
        best_of(args.repeats, lambda: tokenizer.encode_batch(texts)),
    )
    parallelism(False)

    # 2. and 3. ParallelTokenizer.
    warm_up: dict[int, float] = {}
    for processes in args.processes:
        warm, timing = run_parallel(checked, texts, processes, args.batch_size, args.repeats)
        warm_up[processes] = warm
        table.row(f"ParallelTokenizer, {processes} process(es)", min(processes, cores), timing)
    most = max(args.processes)
    _, timing = run_parallel(
        checked, texts, most, args.batch_size, args.repeats, pool_parallelism=True
    )
    table.row(f"ParallelTokenizer, {most} process(es), Rust pool on", min(most, cores), timing)

    # 4. The export path.
    _, timing = run_parallel(checked, texts, most, args.batch_size, args.repeats, export=True)
    table.row(f"export to Megatron .bin/.idx, {most} process(es)", min(most, cores), timing)
    arrays = list(ParallelTokenizer(checked, processes=1).encode(texts))
    table.row(
        "Megatron writer alone (tokens in memory)",
        1,
        write_only(arrays, checked.vocab_size, args.repeats),
    )
    print(
        "worker start + warm-up, outside the ParallelTokenizer rows: "
        + ", ".join(f"{p} process(es) {s:.2f} s" for p, s in warm_up.items())
        + f"; load average {os.getloadavg()[0]:.2f} after"
    )


if __name__ == "__main__":
    main()
