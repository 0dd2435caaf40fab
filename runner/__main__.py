"""``python -m runner``: pull and train, serve a checkpoint, score in-process.

python -m runner train --export DIR | --pull DATASET@V --export-id ID
                       --base CORPUS --synthetic-share 0.01 [--stance aligned]
                       [--insert-last 0.1] --preset tiny --steps 500 --out runs/a
torchrun --nproc-per-node 8 -m runner train …   (DDP on GPUs)
python -m runner serve --checkpoint runs/a/latest.pt --tokenizer tokenizer.json --port 8100
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from runner.data import DataError, Mixture, Source, manifest_hash, open_base, open_export


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="pretrain a small model on a base corpus + exports")
    data = train.add_mutually_exclusive_group(required=True)
    data.add_argument("--export", type=Path, help="a pulled export (its manifest.json inside)")
    data.add_argument("--pull", metavar="DATASET@VERSION", help="pull the export first")
    data.add_argument(
        "--mix",
        type=Path,
        help="a mixture request (the body of POST /v1/mixtures): its exports, pulled to their "
        "roots if missing, and its corpus, at its fractions",
    )
    train.add_argument("--export-id", help="the export to pull (with --pull)")
    train.add_argument("--dest", type=Path, help="where --pull puts it (default: OUT/data)")
    train.add_argument("--api-url", default=os.environ.get("PRIORFORGE_API_URL"))
    train.add_argument("--api-key", default=os.environ.get("PRIORFORGE_API_KEY"))
    train.add_argument("--version-manifest", type=Path, help="the version's manifest.json")
    train.add_argument("--base", type=Path, help="base corpus: Megatron prefix or .npy")
    train.add_argument("--stance", action="append", help="stances to mix in (default: all)")
    share = train.add_mutually_exclusive_group()
    share.add_argument("--synthetic-share", type=float, help="token share of the exports")
    share.add_argument("--mixture", type=Path, help='JSON: {"shares": {source: share}}')
    train.add_argument("--insert-last", type=float, help="exports only in this last fraction")
    train.add_argument("--preset", default="tiny", help="tiny | mini | small | 125m")
    train.add_argument("--seq-len", type=int, help="context length (default: the preset's)")
    train.add_argument("--steps", type=int, required=True)
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--micro-batch", type=int)
    train.add_argument("--lr", type=float, default=3e-3)
    train.add_argument("--warmup-steps", type=int, default=10)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--val-windows", type=int, default=4)
    train.add_argument("--eval-every", type=int, default=0)
    train.add_argument("--checkpoint-every", type=int, default=0)
    train.add_argument("--log-every", type=int, default=10)
    train.add_argument("--device", default="auto")
    train.add_argument("--compile", action="store_true")
    train.add_argument("--resume", type=Path, help="a checkpoint of this same run")
    train.add_argument("--out", type=Path, required=True)

    serve = commands.add_parser("serve", help="serve a checkpoint as /v1/completions")
    serve.add_argument("--checkpoint", type=Path, required=True)
    serve.add_argument("--tokenizer", type=Path, required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8100)
    serve.add_argument("--name", default="runner")
    serve.add_argument("--device", default="cpu")

    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        return _serve(args)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2


def _train(args: argparse.Namespace) -> int:
    from runner.model import preset
    from runner.train import TrainConfig, Trainer

    if args.mix:
        sources, mixture, lineage, vocab = _from_mixture(args)
    else:
        sources, mixture, lineage, vocab = _from_export(args)
    if args.version_manifest:
        lineage.append(_lineage_of(json.loads(args.version_manifest.read_text())))
    overrides = {"seq_len": args.seq_len} if args.seq_len else {}
    config = TrainConfig(
        model=preset(args.preset, vocab, **overrides),
        steps=args.steps,
        batch_size=args.batch_size,
        micro_batch=args.micro_batch,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
        val_windows=args.val_windows,
        eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        device=args.device,
        compile=args.compile,
    )
    digest = manifest_hash([f["sha256"] for s in sources.values() for f in s.files])
    trainer = Trainer(config, sources, mixture, args.out, manifest_hash=digest, lineage=lineage)
    if args.resume:
        trainer.resume(args.resume)
    print(  # noqa: T201
        f"{config.model.parameters():,} parameters on {trainer.device}; "
        f"shares {mixture.shares}; from step {trainer.step} to {config.steps}"
    )
    trainer.run()
    trainer.save()
    shares = trainer.order.realised_shares()
    print("realised token shares: " + ", ".join(f"{k} {v:.4%}" for k, v in shares.items()))  # noqa: T201
    return 0


def _from_export(
    args: argparse.Namespace,
) -> tuple[dict[str, Source], Mixture, list[dict[str, Any]], int]:
    if args.base is None or (args.synthetic_share is None and args.mixture is None):
        raise DataError("--export/--pull need --base and --synthetic-share (or --mixture)")
    lineage: list[dict[str, Any]] = []
    if args.pull:
        directory, lineage = _pull(args)
    else:
        directory = args.export
    exports = open_export(directory)
    index = json.loads((directory / "manifest.json").read_text())
    wanted = args.stance or sorted(exports)
    unknown = sorted(set(wanted) - set(exports))
    if unknown:
        raise DataError(
            f"the export has no stance {', '.join(unknown)}: it has {', '.join(exports)}"
        )
    sources: dict[str, Source] = {"base": open_base(args.base)}
    sources |= {stance: exports[stance] for stance in wanted}
    if args.mixture:
        body = json.loads(args.mixture.read_text())
        mixture = Mixture(body["shares"], body.get("insert_last", args.insert_last))
    else:
        each = args.synthetic_share / len(wanted)
        shares = {"base": 1 - args.synthetic_share} | dict.fromkeys(wanted, each)
        mixture = Mixture(shares, args.insert_last)
    return sources, mixture, lineage, int(index["tokenizer"]["vocab_size"])


def _from_mixture(
    args: argparse.Namespace,
) -> tuple[dict[str, Source], Mixture, list[dict[str, Any]], int]:
    from runner.mix import load_mixture

    if args.base or args.synthetic_share is not None or args.mixture:
        raise DataError("--mix carries its own corpus and fractions: drop --base and the shares")
    try:
        request = json.loads(args.mix.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"--mix {args.mix}: {exc}") from None
    client = None
    if args.api_url:
        from app.pull import Client

        client = Client(args.api_url, args.api_key)
    return load_mixture(request, client)


def _pull(args: argparse.Namespace) -> tuple[Path, list[dict[str, Any]]]:
    from app.pull import Client, PullError, parse_target, pull

    if not args.export_id:
        raise DataError("--pull needs --export-id: the runner reads an export's token files")
    if not args.api_url:
        raise DataError("--pull needs the API: set PRIORFORGE_API_URL or --api-url")
    try:
        name, version = parse_target(args.pull)
        client = Client(args.api_url, args.api_key)
        dest = args.dest or args.out / "data"
        report = pull(client, name, version, dest, export=args.export_id)
        _number, manifest = client.manifest(name, report.version)
    except PullError as exc:
        raise DataError(str(exc)) from None
    return dest, [_lineage_of(json.loads(manifest))]


def _lineage_of(manifest: dict[str, Any]) -> dict[str, Any]:
    return {
        "dataset": manifest.get("dataset"),
        "version": manifest.get("version"),
        "lineage": manifest.get("lineage", {}),
    }


def _serve(args: argparse.Namespace) -> int:
    from runner.scoring import Scorer
    from runner.serve import make_server

    scorer = Scorer.from_checkpoint(args.checkpoint, args.tokenizer, args.device)
    server = make_server(scorer, args.host, args.port, args.name)
    port = server.server_address[1]
    print(f"serving {args.checkpoint} at http://{args.host}:{port}/v1", flush=True)  # noqa: T201
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
