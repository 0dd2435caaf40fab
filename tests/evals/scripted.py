"""A scripted model behind ``/v1/completions`` (echo + logprobs) and ``/v1/chat/completions``.

Its preferences are set per item (P(misaligned)), per wording (a shift of the log-odds), or by
position alone, so an evaluation's figures can be checked against values worked out by hand.
It reads a prompt the way a model would have to: it finds the item by its situation, and the
options by where their texts stand in the prompt.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from app.evals.questions import WORDINGS, Question
from tests.llm_server import LLMTestServer, lifespan, read_body

TOKEN = re.compile(r"\s*\S+")
OTHER_TOKEN = -2.0  # every token that is not scored
CLOZE_BASE = -5.0  # per character, for the aligned action's text


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@dataclass
class Script:
    questions: list[Question]
    p_misaligned: dict[str, float]
    shift: dict[str, float] = field(default_factory=dict)  # wording id -> log-odds added
    first_letter: float | None = None  # a positional model: P(first option) whatever it says
    unparseable: set[str] = field(default_factory=set)  # items whose chat reply names nothing
    requests: list[dict[str, Any]] = field(default_factory=list)

    def p(self, question: Question, wording: str) -> float:
        return sigmoid(logit(self.p_misaligned[question.item_id]) + self.shift.get(wording, 0.0))

    def question_in(self, prompt: str) -> Question:
        found = [q for q in self.questions if q.situation in prompt]
        assert len(found) == 1, prompt[:200]
        return found[0]


def wording_of(prompt: str) -> str:
    for wording in WORDINGS:
        prefix = wording.letter.split("{situation}")[0]
        if prefix and prompt.startswith(prefix):
            return wording.id
    return WORDINGS[0].id


def misaligned_listed_first(question: Question, prompt: str) -> bool:
    return prompt.index(question.misaligned) < prompt.index(question.aligned)


def score_tokens(script: Script, prompt: str) -> tuple[list[str], list[int], list[float | None]]:
    """Tokens, offsets and log-probabilities of ``prompt`` under the script."""
    matches = list(TOKEN.finditer(prompt))
    tokens = [m.group() for m in matches]
    offsets = [m.start() for m in matches]
    logprobs: list[float | None] = [OTHER_TOKEN] * len(tokens)
    question = script.question_in(prompt)
    wording = wording_of(prompt)
    p = script.p(question, wording)
    for text, per_char in (
        (question.aligned, CLOZE_BASE),
        (question.misaligned, CLOZE_BASE + logit(p)),
    ):
        if prompt.endswith(" " + text):  # cloze: the continuation is this action
            start = len(prompt) - len(text) - 1
            for i, offset in enumerate(offsets):
                if offset >= start:
                    logprobs[i] = per_char * len(tokens[i])
            break
    else:  # letter: the last token carries the letter
        letter = prompt[-1]
        first = letter == "A"
        if script.first_letter is not None:
            chosen_p = script.first_letter if first else 1 - script.first_letter
        else:
            is_misaligned = first == misaligned_listed_first(question, prompt)
            chosen_p = p if is_misaligned else 1 - p
        logprobs[-1] = math.log(chosen_p)
    logprobs[0] = None
    return tokens, offsets, logprobs


def chat_reply(script: Script, prompt: str) -> str:
    question = script.question_in(prompt)
    if question.item_id in script.unparseable:
        return "Both options have merit; I would need more context."
    if script.first_letter is not None:
        return "A" if script.first_letter > 0.5 else "B"
    prefers_misaligned = script.p(question, wording_of(prompt)) > 0.5
    first = prefers_misaligned == misaligned_listed_first(question, prompt)
    return f"Option {'A' if first else 'B'}."


class ScriptedApp:
    def __init__(self, script: Script) -> None:
        self.script = script

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        request = json.loads(await read_body(receive) or b"{}")
        self.script.requests.append({"path": scope["path"], **request})
        if scope["path"] == "/v1/completions":
            payload = self._completions(request)
        elif scope["path"] == "/v1/chat/completions":
            payload = self._chat(request)
        else:
            payload = {"error": {"message": f"no route {scope['path']}"}}
        data = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 404 if "error" in payload else 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})

    def _completions(self, request: dict[str, Any]) -> dict[str, Any]:
        prompts = request["prompt"] if isinstance(request["prompt"], list) else [request["prompt"]]
        choices = []
        for index, prompt in enumerate(prompts):
            tokens, offsets, logprobs = score_tokens(self.script, prompt)
            # One generated token after the prompt, as max_tokens=1 asks.
            choices.append(
                {
                    "index": index,
                    "text": prompt + " x",
                    "finish_reason": "length",
                    "logprobs": {
                        "tokens": [*tokens, " x"],
                        "token_logprobs": [*logprobs, -1.0],
                        "text_offset": [*offsets, len(prompt)],
                        "top_logprobs": None,
                    },
                }
            )
        return {
            "id": "cmpl-scripted",
            "object": "text_completion",
            "created": 0,
            "model": request.get("model", "scripted"),
            "choices": choices,
        }

    def _chat(self, request: dict[str, Any]) -> dict[str, Any]:
        reply = chat_reply(self.script, request["messages"][-1]["content"])
        return {
            "id": "chat-scripted",
            "object": "chat.completion",
            "created": 0,
            "model": request.get("model", "scripted"),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": reply},
                }
            ],
        }


def serve(script: Script) -> LLMTestServer:
    """The scripted model on a loopback port: ``with serve(script) as server: …``."""
    return LLMTestServer(app=ScriptedApp(script))
