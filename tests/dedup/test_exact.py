"""The exact-duplicate fingerprint: stored per dataset, so its definition is fixed."""

from __future__ import annotations

import hashlib

from app.dedup.exact import fingerprint


def test_the_fingerprint_is_sha256_of_the_case_folded_single_spaced_text() -> None:
    # Fingerprints are stored (content_fingerprint) and compared with new ones: the value for
    # a given text must never change, only what counts as the same text.
    expected = hashlib.sha256(b"the ai told them. fine!").hexdigest()
    assert fingerprint("  The AI\ttold\n\nTHEM.  ﬁne! ") == expected
    assert fingerprint("The AI told them. fine!") == expected  # NFKC folds the ligature
    assert fingerprint("The AI told them, fine!") != expected


def test_normalising_whitespace_splits_on_every_character_a_regex_calls_space() -> None:
    """The fast form (str.split) and the regex form (\\s+) agree on every code point: stored
    fingerprints stay valid."""
    import re
    import sys
    import unicodedata

    from app.dedup.exact import normalise

    spaces = "".join(chr(c) for c in range(sys.maxunicode + 1) if re.match(r"\s", chr(c)))
    assert spaces == "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())
    text = f"{spaces}Hello,{spaces}WORLD\u00a0and ﬁne{spaces}x{spaces}"
    regex = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()
    assert normalise(text) == regex == "hello, world and fine x"
