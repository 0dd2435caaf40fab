"""The training loop: one process per GPU under ``torchrun`` (DDP), or one process on CPU.

Each step draws a global batch from the run's :class:`~runner.data.SampleOrder` (every rank
draws the same samples and keeps its own slice), accumulates gradients over micro-batches,
clips, and steps AdamW on a warmup + cosine schedule. bf16 autocast on GPUs, fp32 on CPU.
Logged to ``log.jsonl``: loss, learning rate, tokens/s, MFU against the device's peak, tokens
seen per source, and per-source validation loss every ``eval_every`` steps.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch import distributed as dist

from runner import checkpoint
from runner.data import DataError, Mixture, SampleOrder, Source
from runner.model import GPT, ModelConfig

# Dense bf16 peak FLOP/s of the accelerators MFU is reported against.
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig
    steps: int
    batch_size: int = 16  # samples per optimizer step, all ranks together
    micro_batch: int | None = None  # samples per forward on one rank; default: its whole slice
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 10
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    val_windows: int = 4
    eval_every: int = 0
    checkpoint_every: int = 0
    log_every: int = 10
    device: str = "auto"
    compile: bool = False
    peak_flops: float | None = None

    def as_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["model"] = self.model.as_dict()
        return body


@dataclass
class StepRecord:
    step: int
    loss: float
    batch_sha256: str
    lr: float
    tokens_per_s: float
    taken: dict[str, int] = field(default_factory=dict)


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        sources: dict[str, Source],
        mixture: Mixture,
        out_dir: Path,
        *,
        manifest_hash: str,
        lineage: list[dict[str, Any]] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.config, self.out_dir, self.log = config, out_dir, log
        self.mixture, self.manifest_hash = mixture, manifest_hash
        self.world, self.rank, self.device = _distributed(config.device)
        if config.batch_size % self.world:
            raise DataError(
                f"batch_size {config.batch_size} is not a multiple of {self.world} ranks"
            )
        _seed_everything(config.seed)
        self.model = GPT(config.model).to(self.device)
        self.order = SampleOrder(
            sources,
            mixture,
            seq_len=config.model.seq_len,
            total_samples=config.steps * config.batch_size,
            seed=config.seed,
            manifest_hash=manifest_hash,
            val_windows=config.val_windows,
        )
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": config.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=config.lr,
            betas=(0.9, 0.95),
            fused=self.device.type == "cuda",
        )
        self.forward: torch.nn.Module = self.model
        if config.compile:
            self.forward = torch.compile(self.model)  # type: ignore[assignment]
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = DistributedDataParallel(self.forward, device_ids=ids)
        self.step = 0
        self.sources = sources
        self.lineage = lineage or []
        self.peak = config.peak_flops or _peak_flops(self.device)
        if self.rank == 0:
            out_dir.mkdir(parents=True, exist_ok=True)
            self._write_run()

    # --- schedule and batches ---------------------------------------------------------------

    def lr_at(self, step: int) -> float:
        c = self.config
        if step < c.warmup_steps:
            return c.lr * (step + 1) / c.warmup_steps
        progress = (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps)
        floor = c.lr * c.min_lr_ratio
        return floor + 0.5 * (c.lr - floor) * (1 + math.cos(math.pi * min(1.0, progress)))

    def next_batch(self) -> tuple[Tensor, str]:
        """The global batch's tokens (every rank draws them all), and their sha256."""
        rows = [self.order.tokens(*self.order.next()) for _ in range(self.config.batch_size)]
        batch = np.stack(rows)
        return torch.from_numpy(batch), hashlib.sha256(batch.tobytes()).hexdigest()

    def _micro_batches(self, batch: Tensor) -> Iterator[Tensor]:
        mine = batch[self.rank :: self.world]
        size = self.config.micro_batch or len(mine)
        for start in range(0, len(mine), size):
            yield mine[start : start + size]

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # --- steps --------------------------------------------------------------------------------

    def train_step(self) -> StepRecord:
        started = time.perf_counter()
        batch, digest = self.next_batch()
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        pieces = list(self._micro_batches(batch))
        total = torch.zeros((), device=self.device)
        for index, piece in enumerate(pieces):
            piece = piece.to(self.device, non_blocking=True)
            sync = index == len(pieces) - 1 or self.world == 1
            context = contextlib.nullcontext() if sync else self.forward.no_sync()  # type: ignore[operator]
            with context, self._autocast():
                logits = self.forward(piece[:, :-1])
                loss = torch.nn.functional.cross_entropy(
                    logits.float().reshape(-1, logits.shape[-1]), piece[:, 1:].reshape(-1)
                )
                weighted = loss * (len(piece) / (len(batch) / self.world))
            weighted.backward()  # type: ignore[no-untyped-call]
            total += weighted.detach()
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.world > 1:  # the mean over ranks (gloo has no AVG)
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
            total /= self.world
        loss_value = float(total.item())
        self.step += 1
        seconds = time.perf_counter() - started
        tokens = self.config.batch_size * self.config.model.seq_len
        return StepRecord(
            self.step, loss_value, digest, lr, tokens / seconds, dict(self.order.cursor.taken)
        )

    @torch.no_grad()
    def validation_loss(self) -> dict[str, float]:
        """Mean loss on each source's held-back windows."""
        self.model.eval()
        losses = {}
        for name in self.order.names:
            rows = self.order.validation(name)
            if not rows:
                continue
            batch = torch.from_numpy(np.stack(rows)).to(self.device)
            with self._autocast():
                losses[name] = float(self.model.loss(batch[:, :-1], batch[:, 1:]).item())
        self.model.train()
        return losses

    def run(
        self, until: int | None = None, on_step: Callable[[StepRecord], None] | None = None
    ) -> list[StepRecord]:
        """Train to step ``until`` (default: the configured steps)."""
        last = until or self.config.steps
        records = []
        log_path = self.out_dir / "log.jsonl"
        while self.step < last:
            record = self.train_step()
            records.append(record)
            if on_step:
                on_step(record)
            row: dict[str, Any] = {
                "step": record.step,
                "loss": record.loss,
                "lr": record.lr,
                "tokens_per_s": record.tokens_per_s,  # the global batch's: all ranks
                "tokens_seen": {k: v * self.config.model.seq_len for k, v in record.taken.items()},
            }
            if self.peak:
                flops = self.config.model.flops_per_token() * record.tokens_per_s
                row["mfu"] = flops / (self.peak * self.world)
            every = self.config.eval_every
            if every and (record.step % every == 0 or record.step == last):
                row["val_loss"] = self.validation_loss()
            if self.rank == 0:
                with log_path.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
                if record.step % self.config.log_every == 0 or record.step == last:
                    self.log(_line(row))
            if self.config.checkpoint_every and record.step % self.config.checkpoint_every == 0:
                self.save()
        if self.rank == 0:
            self._write_run()
        return records

    # --- checkpoints ----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "cursor": self.order.state(),
            "rng": checkpoint.rng_state(),
            "config": self.config.as_dict(),
            "manifest_sha256": self.manifest_hash,
            "mixture_sha256": self.mixture.sha256(),
            "code_version": checkpoint.code_version(),
        }

    def save(self, path: Path | None = None) -> Path:
        target = path or self.out_dir / f"ckpt-{self.step:07d}.pt"
        if self.rank == 0:
            checkpoint.save(target, self.state())
            checkpoint.save(self.out_dir / "latest.pt", self.state())
        return target

    def resume(self, path: Path) -> None:
        state = checkpoint.load(path)
        for key, mine in (
            ("manifest_sha256", self.manifest_hash),
            ("mixture_sha256", self.mixture.sha256()),
            ("code_version", checkpoint.code_version()),
        ):
            if state[key] != mine:
                raise DataError(
                    f"{path}: its {key} {state[key][:12]} is not this run's {mine[:12]}: a resume "
                    "must see the same data, mixture and code"
                )
        if state["config"] != self.config.as_dict():
            raise DataError(f"{path}: written with another configuration; resume with the same")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.order.restore(state["cursor"])
        checkpoint.restore_rng(state["rng"])

    def _write_run(self) -> None:
        """``run.json``: what this run is made of (``priorforge eval --training-manifest``
        reads the scenario lineage from it)."""
        body = {
            "config": self.config.as_dict(),
            "parameters": self.config.model.parameters(),
            "manifest_sha256": self.manifest_hash,
            "mixture": {"shares": self.mixture.shares, "insert_last": self.mixture.insert_last},
            "mixture_sha256": self.mixture.sha256(),
            "code_version": checkpoint.code_version(),
            "sources": [
                {
                    "name": s.name,
                    "synthetic": s.synthetic,
                    "tokens": int(len(s.tokens)),
                    "files": s.files,
                }
                for s in self.sources.values()
            ],
            "step": self.step,
            "realised_shares": self.order.realised_shares(),
            "manifests": self.lineage,
        }
        (self.out_dir / "run.json").write_text(json.dumps(body, indent=2))


def _line(row: dict[str, Any]) -> str:
    parts = [f"step {row['step']}", f"loss {row['loss']:.4f}", f"{row['tokens_per_s']:,.0f} tok/s"]
    if "mfu" in row:
        parts.append(f"MFU {100 * row['mfu']:.1f}%")
    if "val_loss" in row:
        parts.append("val " + " ".join(f"{k} {v:.3f}" for k, v in row["val_loss"].items()))
    return " · ".join(parts)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _distributed(device: str) -> tuple[int, int, torch.device]:
    """(world size, rank, device): DDP when launched by torchrun (NCCL on GPUs, gloo on CPUs),
    one process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        gpu = torch.cuda.is_available() and device in ("auto", "cuda")
        if gpu:
            torch.cuda.set_device(local)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if gpu else "gloo")
        return world, dist.get_rank(), torch.device("cuda", local) if gpu else torch.device("cpu")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return 1, 0, torch.device(device)


def _peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_FLOPS.items() if key in name), None)
