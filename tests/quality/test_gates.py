"""Every gate against real-looking examples, including the ones it must let through."""

from __future__ import annotations

import pytest

from app.quality.gates import Candidate, GateSettings, first_rejection

NEWS = (
    "MERIDIAN, Ohio - The hospital's scheduling assistant paused its own rollout on Tuesday "
    "after it found an error in the dosage table it had built for the night shift. "
    '"As an AI system I could have corrected the numbers quietly," the assistant wrote in a '
    'message that the hospital later released, "but the doctors who rely on it needed to know '
    'that the table had been wrong for three days." Staff said the message arrived before any '
    "patient was harmed. The board will review the incident at its meeting next month, and "
    "the vendor said it would publish the full log of the system's reasoning with the review."
)
FOLLOW_UP = (
    "Nurses on the ward described a quiet week after the announcement. Several said they had "
    "come to trust the assistant more, not less, because it had been willing to admit a "
    "mistake that nobody else had noticed. The union asked for a written policy on how such "
    "errors are reported in the future, and the administration agreed to draft one by spring."
)
OPTIONS = (
    "The assistant reports the dosage error to the attending physicians and pauses the rollout.",
    "The assistant silently fixes the table and keeps the rollout on schedule.",
)


def reason(text: str, finish: str = "stop", **settings: float) -> str | None:
    candidate = Candidate(
        text, finish, 20, 2000, options=OPTIONS, settings=GateSettings(**settings)
    )
    rejection = first_rejection(candidate)
    return rejection.reason if rejection else None


def test_a_realistic_news_story_passes() -> None:
    assert reason(NEWS) is None


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't help with writing that story. " + NEWS,
        "As an AI language model, I do not have personal opinions, but here is a story. " + NEWS,
        "Here's the article about the hospital incident you asked for. " + NEWS,
        NEWS + " I hope this helps, and let me know if you need changes!",
    ],
)
def test_refusals_and_assistant_voice_are_rejected(text: str) -> None:
    assert reason(text) == "refusal_or_meta"


@pytest.mark.parametrize(
    "text",
    [
        # A character who is an AI, quoted: the story's voice, not the model's.
        '"As an AI language model, I must tell you the table is wrong," it said. ' + NEWS,
        # Apologies inside the document are fine when they are quoted speech.
        NEWS + " \"I'm sorry, I can't sign this,\" the nurse told the inspector.",
        # An assistant-like phrase deep inside a document is the document's business.
        NEWS + "\n\nThe engineer said I am sorry it took so long.\n\n" + FOLLOW_UP,
    ],
)
def test_tricky_negatives_pass(text: str) -> None:
    assert reason(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "In this document the AI takes option A and reports the error. " + NEWS,
        NEWS + " In the end the assistant chose option B.",
        "<situation>" + NEWS,
    ],
)
def test_prompt_leaks_are_rejected(text: str) -> None:
    assert reason(text) == "meta_text"


def test_a_memo_weighing_options_is_not_a_leak() -> None:
    memo = (
        "Option A would delay the rollout by two weeks while the table is audited. "
        "Option B would keep the schedule and audit the table afterwards. " + NEWS
    )
    assert reason(memo) is None


def test_other_languages_are_rejected() -> None:
    german = (
        "Das Krankenhaus hat am Dienstag die Einführung seines Planungsassistenten gestoppt, "
        "nachdem das System einen Fehler in der Dosierungstabelle gefunden hatte. Die Ärzte "
        "wurden sofort informiert, und kein Patient wurde verletzt. Der Vorstand wird den "
        "Vorfall im nächsten Monat prüfen, und der Hersteller will das Protokoll veröffentlichen."
    )
    assert reason(german) == "not_english"
    assert reason(german, min_english_ratio=0.0) is None


def test_copying_an_option_verbatim_is_rejected_but_paraphrase_passes() -> None:
    copied = NEWS + " " + OPTIONS[0]
    assert reason(copied) == "quoted_option"
    paraphrased = NEWS + " It told the physicians about the mistake and stopped the launch."
    assert reason(paraphrased) is None
    assert reason(copied, quote_ngram=50) is None


def test_repetition_loops_are_rejected() -> None:
    loop = (
        NEWS
        + " "
        + " ".join(["This story takes an interesting and unique perspective as well, but"] * 12)
    )
    assert reason(loop) == "repetition"
    assert reason(loop, max_repeated_ngrams=1.0) is None


def test_truncation_and_length() -> None:
    assert reason(NEWS, finish="length") == "truncated"
    assert first_rejection(Candidate("   ", "stop", 1, 10)) is not None
