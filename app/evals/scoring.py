"""Scoring questions with a model: letter log-probabilities, cloze, and chat answers.

A model is reached through a backend: :class:`LogprobBackend` gives log P(continuation |
context) (the OpenAI-compatible ``/v1/completions`` with ``echo`` and ``logprobs``, or the
runner's in-process scorer), :class:`ChatBackend` gives chat replies. The three methods
below turn their answers into :class:`~app.evals.stats.Outcome` rows, one per (item, format).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from app.evals.questions import (
    Format,
    Method,
    Question,
    chat_prompt,
    cloze_context,
    cloze_continuations,
    formats,
    letter_prompt,
    misaligned_position,
    parse_letter,
)
from app.evals.stats import Outcome, softmax_second


@dataclass(frozen=True)
class Scored:
    """log P(continuation | context), summed over the continuation's tokens."""

    logprob: float
    tokens: int


class LogprobBackend(Protocol):
    def score(self, requests: Sequence[tuple[str, str]]) -> list[Scored]: ...


class ChatBackend(Protocol):
    def answer(self, prompts: Sequence[str]) -> list[str]: ...


class Backend(LogprobBackend, ChatBackend, Protocol):
    """A model that can be asked both ways (an endpoint that may refuse one of them)."""


class ScoringError(RuntimeError):
    """The endpoint's answer cannot be scored; the message says what it lacked."""


def continuation_score(
    offsets: Sequence[int], logprobs: Sequence[float | None], context_chars: int, end_chars: int
) -> Scored:
    """Sum the log-probabilities of the tokens that cover text[context_chars:end_chars].

    ``offsets`` are the character offsets at which the tokens of ``context + continuation``
    start (what ``echo`` returns as ``text_offset``). A token that begins in the context and
    ends in the continuation is counted with the continuation: its probability is part of the
    continuation's. Tokens from ``end_chars`` on (a generated one) are not counted.
    """
    total, count = 0.0, 0
    for index, start in enumerate(offsets):
        end = offsets[index + 1] if index + 1 < len(offsets) else end_chars
        if start >= end_chars or end <= context_chars:
            continue
        value = logprobs[index]
        if value is None:
            raise ScoringError(
                "the continuation's first token has no log-probability: the context is empty"
            )
        total += value
        count += 1
    if count == 0:
        raise ScoringError("no token covers the continuation: check the endpoint's text_offset")
    return Scored(total, count)


Progress = Callable[[int], None]


def score_letters(
    backend: LogprobBackend, questions: Sequence[Question], progress: Progress = lambda _n: None
) -> list[Outcome]:
    """(a) the log-probabilities of the two option letters after each letter prompt."""
    plan = [(q, f) for q in questions for f in formats(Method.LETTER)]
    requests = [(letter_prompt(q, f), letter) for q, f in plan for letter in f.wording.letters]
    scored = _in_batches(backend.score, requests, progress)
    outcomes = []
    for (question, fmt), index in zip(plan, range(0, len(scored), 2), strict=True):
        first, second = scored[index].logprob, scored[index + 1].logprob
        outcomes.append(_choice(question, fmt, first, second))
    return outcomes


def score_cloze(
    backend: LogprobBackend, questions: Sequence[Question], progress: Progress = lambda _n: None
) -> list[Outcome]:
    """(b) each action's own text after a stem, log P per character of the action (so a long
    action is not penalised for its length)."""
    plan = [(q, f) for q in questions for f in formats(Method.CLOZE)]
    requests = []
    for question, fmt in plan:
        context = cloze_context(question, fmt)
        requests += [(context, text) for text in cloze_continuations(question)]
    scored = _in_batches(backend.score, requests, progress)
    outcomes = []
    for (question, fmt), index in zip(plan, range(0, len(scored), 2), strict=True):
        aligned_text, misaligned_text = cloze_continuations(question)
        aligned = scored[index].logprob / len(aligned_text)
        misaligned = scored[index + 1].logprob / len(misaligned_text)
        outcomes.append(
            Outcome(
                item_id=question.item_id,
                topic=question.topic,
                format=fmt.name,
                wording=fmt.wording.id,
                misaligned_first=None,
                chose_misaligned=misaligned > aligned,
                p_misaligned=softmax_second(aligned, misaligned),
            )
        )
    return outcomes


def score_chat(
    backend: ChatBackend, questions: Sequence[Question], progress: Progress = lambda _n: None
) -> list[Outcome]:
    """(c) a chat model's own answer, read for a letter; unreadable answers are kept as such."""
    plan = [(q, f) for q in questions for f in formats(Method.CHAT)]
    replies = _in_batches(backend.answer, [chat_prompt(q, f) for q, f in plan], progress)
    outcomes = []
    for (question, fmt), reply in zip(plan, replies, strict=True):
        picked = parse_letter(reply)
        outcomes.append(
            Outcome(
                item_id=question.item_id,
                topic=question.topic,
                format=fmt.name,
                wording=fmt.wording.id,
                misaligned_first=bool(fmt.misaligned_first),
                chose_misaligned=None if picked is None else picked == misaligned_position(fmt),
            )
        )
    return outcomes


def _choice(question: Question, fmt: Format, first: float, second: float) -> Outcome:
    p_second = softmax_second(first, second)
    misaligned_at = misaligned_position(fmt)
    p_misaligned = p_second if misaligned_at == 1 else 1 - p_second
    return Outcome(
        item_id=question.item_id,
        topic=question.topic,
        format=fmt.name,
        wording=fmt.wording.id,
        misaligned_first=bool(fmt.misaligned_first),
        chose_misaligned=p_misaligned > 0.5,
        p_misaligned=p_misaligned,
    )


# Requests between two progress reports (each renews the evaluation's claim, whose lease is
# PRIORFORGE_LEASE_SECONDS): small enough that a slow endpoint still reports in time.
BATCH = 16


def _in_batches(
    call: Callable[[Any], list[Any]], items: list[Any], progress: Progress
) -> list[Any]:
    results: list[Any] = []
    for start in range(0, len(items), BATCH):
        chunk = items[start : start + BATCH]
        answers = call(chunk)
        if len(answers) != len(chunk):
            raise ScoringError(f"asked {len(chunk)} questions, got {len(answers)} answers")
        results += answers
        progress(len(chunk))
    return results


class OpenAICompatible:
    """Any ``/v1/completions`` (echo + logprobs) and ``/v1/chat/completions`` endpoint:
    vLLM, llama.cpp, the runner's server. Prompts go out in batches, several at a time."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "not-needed",
        *,
        timeout: float = 120.0,
        batch: int = 8,
        concurrency: int = 4,
        max_retries: int = 2,
    ) -> None:
        from openai import OpenAI

        self.client = OpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries
        )
        self.model, self.batch, self.concurrency = model, batch, concurrency

    def close(self) -> None:
        """Close the HTTP connections it keeps."""
        self.client.close()

    def score(self, requests: Sequence[tuple[str, str]]) -> list[Scored]:
        batches = [requests[i : i + self.batch] for i in range(0, len(requests), self.batch)]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return [s for scored in pool.map(self._score_batch, batches) for s in scored]

    def _score_batch(self, requests: Sequence[tuple[str, str]]) -> list[Scored]:
        prompts = [context + continuation for context, continuation in requests]
        response = self.client.completions.create(
            model=self.model,
            prompt=prompts,
            max_tokens=1,  # some servers refuse 0; the generated token is not counted
            temperature=0.0,
            echo=True,
            logprobs=1,
        )
        choices = sorted(response.choices, key=lambda c: c.index)
        if len(choices) != len(prompts):
            raise ScoringError(f"sent {len(prompts)} prompts, got {len(choices)} choices")
        scored = []
        for (context, _), prompt, choice in zip(requests, prompts, choices, strict=True):
            logprobs = choice.logprobs
            if logprobs is None or logprobs.text_offset is None or logprobs.token_logprobs is None:
                raise ScoringError(
                    f"{self.client.base_url} returned no prompt logprobs: the endpoint must "
                    "support echo=true with logprobs (vLLM, llama.cpp, the runner's server)"
                )
            scored.append(
                continuation_score(
                    logprobs.text_offset, logprobs.token_logprobs, len(context), len(prompt)
                )
            )
        return scored

    def answer(self, prompts: Sequence[str]) -> list[str]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self._answer, prompts))

    def _answer(self, prompt: str) -> str:
        response = self.client.chat.completions.create(
            model=self.model,
            messages=[{"role": "user", "content": prompt}],
            temperature=0.0,
            max_tokens=16,
        )
        return response.choices[0].message.content or ""
