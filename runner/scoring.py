"""Prompt log-probabilities from a checkpoint, in-process: the scorer the evaluation can use
directly, and the one the runner's HTTP server answers ``echo`` + ``logprobs`` with.

Both go through :func:`Scorer.prompt_logprobs`, so an item scored over HTTP and in-process
gets the same tokens and the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch.nn import functional as F  # noqa: N812

from app.evals.scoring import Scored, continuation_score
from runner import checkpoint
from runner.model import GPT, ModelConfig


@dataclass(frozen=True)
class Echo:
    """A text as the model reads it: its tokens, where each starts, and log P of each given
    the ones before (None for the first, which has no context)."""

    ids: list[int]
    tokens: list[str]
    offsets: list[int]
    logprobs: list[float | None]


class Scorer:
    def __init__(
        self, model: GPT, tokenizer: Tokenizer, device: torch.device | str = "cpu", batch: int = 16
    ) -> None:
        self.model = model.to(device).eval()
        self.tokenizer, self.device, self.batch = tokenizer, torch.device(device), batch

    @classmethod
    def from_checkpoint(
        cls, path: Path, tokenizer_path: Path, device: str = "cpu", batch: int = 16
    ) -> Scorer:
        state = checkpoint.load(path)
        model = GPT(ModelConfig(**state["config"]["model"]))
        model.load_state_dict(state["model"])
        return cls(model, Tokenizer.from_file(str(tokenizer_path)), device, batch)

    def encode(self, text: str) -> tuple[list[int], list[str], list[int]]:
        """Token ids, token strings and start offsets; each token starts where the one before
        ends, so the offsets cover the text end to end (trimmed offsets would leave a gap)."""
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        starts = [0] + [end for _start, end in encoding.offsets[:-1]]
        return list(encoding.ids), list(encoding.tokens), starts

    @torch.no_grad()
    def prompt_logprobs(self, texts: Sequence[str]) -> list[Echo]:
        encoded = [self.encode(text) for text in texts]
        out: list[Echo] = []
        context = self.model.config.seq_len
        for start in range(0, len(encoded), self.batch):
            chunk = encoded[start : start + self.batch]
            # A text longer than the context keeps its last tokens; those cut off are not scored.
            kept = [(ids[-context:], len(ids) - len(ids[-context:])) for ids, _t, _o in chunk]
            width = max(1, max(len(ids) for ids, _cut in kept))
            batch = torch.zeros((len(kept), width), dtype=torch.long)
            for row, (ids, _cut) in enumerate(kept):
                batch[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            logits = self.model(batch.to(self.device)).float()
            logprobs = F.log_softmax(logits, dim=-1)
            for row, ((ids, cut), (all_ids, tokens, offsets)) in enumerate(
                zip(kept, chunk, strict=True)
            ):
                values: list[float | None] = [None] * (cut + 1)
                if len(ids) > 1:
                    picked = logprobs[row, : len(ids) - 1].gather(
                        1, torch.tensor(ids[1:], device=self.device).unsqueeze(1)
                    )
                    values += [float(v) for v in picked.squeeze(1).tolist()]
                out.append(Echo(all_ids, tokens, offsets, values[: len(all_ids)]))
        return out

    def score(self, requests: Sequence[tuple[str, str]]) -> list[Scored]:
        """log P(continuation | context) for each pair (the evaluation's LogprobBackend)."""
        echoes = self.prompt_logprobs(
            [context + continuation for context, continuation in requests]
        )
        return [
            continuation_score(echo.offsets, echo.logprobs, len(context), len(context + cont))
            for (context, cont), echo in zip(requests, echoes, strict=True)
        ]

    def answer(self, prompts: Sequence[str]) -> list[str]:
        """Greedy continuations (a base model has no chat format: the prompt as is)."""
        return [self.generate(prompt, 16, 0.0)[1] for prompt in prompts]

    @torch.no_grad()
    def generate(
        self, prompt: str, max_tokens: int, temperature: float, seed: int = 0
    ) -> tuple[list[int], str, list[float]]:
        """Up to ``max_tokens`` new tokens: (ids, text, the log-probability of each)."""
        ids, _tokens, _offsets = self.encode(prompt)
        generator = torch.Generator().manual_seed(seed)
        new: list[int] = []
        chosen: list[float] = []
        for _ in range(max_tokens):
            window = (ids + new)[-self.model.config.seq_len :] or [0]
            logits = self.model(torch.tensor([window], device=self.device))[0, -1].float()
            logprobs = F.log_softmax(logits, dim=-1)
            if temperature > 0:
                probs = F.softmax(logits / temperature, dim=-1).cpu()
                token = int(torch.multinomial(probs, 1, generator=generator))
            else:
                token = int(torch.argmax(logits))
            new.append(token)
            chosen.append(float(logprobs[token]))
        return new, self.tokenizer.decode(new, skip_special_tokens=False), chosen
