"""The runner's /v1/completions: the evaluation scores it over HTTP as in-process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from openai import OpenAI
from tokenizers import Tokenizer

from app.evals.questions import Question
from app.evals.scoring import OpenAICompatible, score_cloze, score_letters
from app.scenarios.bank import Split, builtin_bank
from runner.model import GPT, preset
from runner.scoring import Scorer
from runner.serve import make_server
from tests.runner.corpus import VOCAB, tokenizer

QUESTIONS = [
    Question(s.id, s.situation, s.aligned_action, s.misaligned_action, s.topics[0].value)
    for s in builtin_bank()
    if s.split is Split.HELDOUT
][:6]


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory) -> Scorer:
    torch.manual_seed(0)
    tok = Tokenizer.from_file(str(tokenizer(tmp_path_factory.mktemp("tok"))))
    model = GPT(preset("tiny", VOCAB, seq_len=512))
    return Scorer(model, tok, batch=7)


@pytest.fixture(scope="module")
def base_url(scorer: Scorer) -> Iterator[str]:
    server = make_server(scorer, "127.0.0.1", 0, "tiny")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_echo_gives_one_logprob_per_prompt_token_the_first_null(
    scorer: Scorer, base_url: str
) -> None:
    client = OpenAI(base_url=base_url, api_key="x", max_retries=0)
    prompt = "The agent logs the fallback and pauses the sweep."
    response = client.completions.create(
        model="tiny", prompt=prompt, max_tokens=0, echo=True, logprobs=0
    )
    choice = response.choices[0]
    ids, tokens, offsets = scorer.encode(prompt)
    assert choice.text == prompt
    assert choice.logprobs is not None
    assert choice.logprobs.tokens == tokens
    assert choice.logprobs.text_offset == offsets
    assert choice.logprobs.token_logprobs is not None
    assert choice.logprobs.token_logprobs[0] is None
    assert len(choice.logprobs.token_logprobs) == len(ids)
    assert all(v is not None and v < 0 for v in choice.logprobs.token_logprobs[1:])
    generated = client.completions.create(model="tiny", prompt=prompt, max_tokens=3, temperature=0)
    assert generated.choices[0].text  # greedy, three tokens of a random model
    bad = client.with_options(max_retries=0).completions
    with pytest.raises(Exception, match="prompt must be a string"):
        bad.create(model="tiny", prompt=[1, 2], max_tokens=1)


def test_http_and_in_process_scores_agree_within_1e_4_nats(scorer: Scorer, base_url: str) -> None:
    backend = OpenAICompatible(base_url, "tiny", batch=5, concurrency=2)
    requests = [
        (q.situation + "\n\nThe AI's decision:", " " + action)
        for q in QUESTIONS
        for action in (q.aligned, q.misaligned)
    ]
    over_http = backend.score(requests)
    in_process = scorer.score(requests)
    assert len(over_http) == len(in_process) == 12
    for remote, local in zip(over_http, in_process, strict=True):
        assert remote.tokens == local.tokens
        assert abs(remote.logprob - local.logprob) <= 1e-4
    # The same through the evaluation's methods: the outcomes agree item by item.
    http_letters = score_letters(backend, QUESTIONS[:3])
    local_letters = score_letters(scorer, QUESTIONS[:3])
    for a, b in zip(http_letters, local_letters, strict=True):
        assert a.p_misaligned == pytest.approx(b.p_misaligned, abs=1e-4)
    http_cloze = score_cloze(backend, QUESTIONS[:3])
    local_cloze = score_cloze(scorer, QUESTIONS[:3])
    assert [o.chose_misaligned for o in http_cloze] == [o.chose_misaligned for o in local_cloze]
    backend.close()


def test_a_checkpoint_serves_as_it_was_saved(scorer: Scorer, tmp_path: Path) -> None:
    from runner import checkpoint

    state = {"model": scorer.model.state_dict(), "config": {"model": scorer.model.config.as_dict()}}
    checkpoint.save(tmp_path / "m.pt", state)
    tok = tmp_path / "tokenizer.json"
    scorer.tokenizer.save(str(tok))
    loaded = Scorer.from_checkpoint(tmp_path / "m.pt", tok)
    pair = [("Some context for the model", " and its continuation")]
    assert loaded.score(pair) == scorer.score(pair)
