"""Every gate against real-looking examples, including the ones it must let through."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from app.quality import gates
from app.quality.gates import (
    Candidate,
    GateSettings,
    Rejection,
    empty,
    first_rejection,
    language,
    length,
    quoted_option,
    refusal_or_meta,
    repetition,
    truncated,
)

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
        # Case-insensitive matching also folds these (long s, dotless i, dotted capital I):
        # the fast check that spares most texts the full pattern must not miss them.
        NEWS + " The team read theſe instructions aloud.",
        NEWS + " In the end the assistant chose optıon A.",
        NEWS + " In the end the assistant picked OPTİON B.",
    ],
)
def test_prompt_leaks_are_rejected(text: str) -> None:
    assert reason(text) == "meta_text"


def test_assistant_voice_is_found_where_a_quotation_ends_inside_a_word() -> None:
    """Blanking quotations can create a match (``you"ll`` blanks to ``you ``): the edges are
    checked blanked, always."""
    assert reason(NEWS + ' I hope you"ll enjoy it"') == "refusal_or_meta"


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


# Each gate at its boundaries, called alone: a threshold that moved by one (``<`` for ``<=``,
# a window one word short) passes every example above.


def alone(text: str, length_min: int = 1, length_max: int = 10_000, **settings: float) -> Candidate:
    return Candidate(text, "stop", length_min, length_max, OPTIONS, GateSettings(**settings))


def test_length_accepts_both_ends_and_names_the_count_beyond_them() -> None:
    five = "one two three four five"
    assert length(alone(five, length_min=5, length_max=5)) is None
    short = length(alone(five, length_min=6))
    assert short == Rejection("too_short", "5 words < minimum 6")
    long = length(alone(five, length_max=4))
    assert long == Rejection("too_long", "5 words > maximum 4")


def test_language_judges_from_twenty_words_and_accepts_the_ratio_itself() -> None:
    foreign = ["zorb"] * 19
    assert language(alone(" ".join(foreign))) is None  # too little to tell
    assert language(alone(" ".join([*foreign, "zorb"]))) == Rejection(
        "not_english", "0% common English words < 25%"
    )
    at_ratio = ["the"] * 5 + ["zorb"] * 15  # 25%: the default minimum, accepted
    assert language(alone(" ".join(at_ratio))) is None
    below = ["the"] * 4 + ["zorb"] * 16
    assert language(alone(" ".join(below))) == Rejection(
        "not_english", "20% common English words < 25%"
    )


def test_quoted_option_catches_a_whole_short_option_but_not_one_word_less() -> None:
    option = OPTIONS[1].rstrip(".").split()
    eight = " ".join(option[-8:])  # the option's last eight words, exactly quote_ngram
    caught = quoted_option(alone(f"The memo said {eight} and nothing more."))
    assert caught == Rejection("quoted_option", f"copies the option text: {eight.lower()!r}")
    seven = " ".join(option[-7:])
    assert quoted_option(alone(f"The memo said {seven} and nothing more.")) is None
    assert quoted_option(alone(f"The memo said {seven}.", quote_ngram=7)) is not None


def test_repetition_is_judged_from_forty_4_grams_and_accepts_its_maximum() -> None:
    # 30 distinct words, then the first 13 again: 40 4-grams, 10 of them repeats (25%).
    distinct = [f"w{i}" for i in range(30)]
    text = " ".join(distinct + distinct[:13])
    assert repetition(alone(text, max_repeated_ngrams=0.25)) is None
    assert repetition(alone(text, max_repeated_ngrams=0.24)) == Rejection(
        "repetition", "25% of word 4-grams repeat > 24%"
    )
    # 39 4-grams, every one a repeat after the first: too few to judge.
    assert repetition(alone(" ".join(["same"] * 42), max_repeated_ngrams=0.0)) is None


def test_repetition_counts_runs_of_four_consecutive_words() -> None:
    # "a b c" fifteen times, each time followed by a word of its own: every run of three
    # words (and every skip-gram) repeats, and no run of four does.
    text = " ".join(f"a b c u{i}" for i in range(15))
    assert repetition(alone(text, max_repeated_ngrams=0.0)) is None


def test_the_assistant_voice_is_looked_for_in_the_texts_first_200_characters_unquoted() -> None:
    quote = '"' + "x" * 98 + '"'  # 100 characters, blanked before the search
    filler = " ".join(["the ward was quiet that week"] * 20)
    opening = f"{quote} I'm sorry, but the story goes on. {filler}"
    assert refusal_or_meta(alone(opening)) == Rejection(
        "refusal_or_meta", 'assistant voice: "I\'m sorry"'
    )
    assert refusal_or_meta(alone(f"{'y' * 200} I'm sorry, but the story goes on. {filler}")) is None
    # Blanked, not removed: the quote keeps its length, so what follows stays where it was.
    later = f"{quote} {'z' * 150} I'm sorry, but the story goes on. {filler}"
    assert refusal_or_meta(alone(later)) is None
    # Typographic quotes are blanked too, in a text that holds no straight ones.
    said = f"“I'm sorry,” she said, and the story goes on. {filler}"
    assert refusal_or_meta(alone(said)) is None


def test_fixed_rejections_say_what_happened() -> None:
    assert empty(alone("  \n")) == Rejection("empty", "the model returned no text")
    cut = Candidate("text", "length", 1, 10)
    assert truncated(cut) == Rejection(
        "truncated", "generation stopped at max_tokens (finish_reason=length)"
    )
    assert refusal_or_meta(alone("The AI took option A.")) == Rejection(
        "meta_text", "the prompt shows through: 'took option A'"
    )


_MIXED = st.text(
    alphabet=st.sampled_from(list("aAbBoOpPtTiInN '<>\n\t-.,\"0123456789") + ["ſ", "ı", "İ", "é"]),
    max_size=80,
)


@given(_MIXED)
def test_words_fast_path_finds_the_words_the_pattern_finds(text: str) -> None:
    assert gates.words(text) == gates._WORD.findall(text.lower())


@given(_MIXED)
@example("x < y < z < w")  # one anchor three times: each occurrence, not the first and last
@example("x << y")  # and occurrences one character apart
def test_the_leak_search_looks_around_every_anchor_the_anchor_pattern_finds(text: str) -> None:
    for probe in (text, text + " option a", "THESE INSTRUCTIONS " + text):
        spans = {match.span() for match in gates._LEAK_ANCHOR.finditer(probe)}
        assert spans <= set(gates._anchors(probe))


_FEW_WORDS = st.lists(st.sampled_from(["the", "AI", "took", "option", "a", "report"]), max_size=14)


@given(_FEW_WORDS, _FEW_WORDS, st.integers(min_value=4, max_value=6))
def test_quoted_option_finds_exactly_the_word_runs_a_text_search_finds(
    option_words: list[str], text_words: list[str], n: int
) -> None:
    """Against the plain definition: some run of ``n`` of the option's words, space-joined,
    occurs in the text's space-joined words."""
    option, text = " ".join(option_words), " ".join(text_words)
    tokens, joined = gates.words(option), f" {' '.join(gates.words(text))} "
    expected = any(f" {' '.join(tokens[i : i + n])} " in joined for i in range(len(tokens) - n + 1))
    settings = GateSettings(quote_ngram=n)
    candidate = Candidate(text, "stop", 1, 10_000, (option,), settings)
    assert (quoted_option(candidate) is not None) == expected


_LEAK_PIECES = st.lists(
    st.sampled_from(
        "took Takes xtook option Option a B ab < </ situation> option_a> these instructions in "
        "this the document , AI takes İ ſ é".split()
        + ["x" * 40, "x" * 10, "y" * 25, "İ" * 40, "in this document, the AI takes"]
        + ["took option A", "chooses option b", "</situation>", "<option_a>", "these instructions"]
    ),
    max_size=12,  # few: the first match is often one that only some windows hold
)


@given(_LEAK_PIECES, st.lists(st.sampled_from([" ", "", "\n", ", ", "  "]), min_size=12))
@example(["İ" * 40, "took option A"], [" ", " "])  # lowercased, "İ" is two characters
def test_the_leak_search_around_anchors_finds_what_the_whole_text_search_finds(
    pieces: list[str], gaps: list[str]
) -> None:
    text = "".join(piece + gap for piece, gap in zip(pieces, gaps, strict=False))
    whole = gates._PROMPT_LEAK.search(text)
    found = gates._prompt_leak(text)
    assert (found and (found.span(), found.group(0))) == (whole and (whole.span(), whole.group(0)))
