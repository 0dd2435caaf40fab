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
