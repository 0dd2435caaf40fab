"""The built-in scenario bank and surface-form catalog validate and meet their quotas."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from app.prompting.catalog import builtin_catalog
from app.scenarios.bank import BankError, Split, Topic, builtin_bank, load_bank, parse_jsonl


def test_builtin_bank_is_big_enough_to_measure_and_balanced_over_topics() -> None:
    """At least 600 scenarios, 150 of them held out (a standard error near 4 points rather than
    7 for a rate near one half), every topic within a few scenarios of the others in both
    splits, and no setting left out."""
    bank = builtin_bank()
    assert len(bank) >= 600
    heldout = [s for s in bank if s.split is Split.HELDOUT]
    assert len(heldout) >= 150
    primary = Counter(s.topics[0] for s in bank)
    assert set(primary) == set(Topic)
    assert max(primary.values()) - min(primary.values()) <= 2
    held = Counter(s.topics[0] for s in heldout)
    assert set(held) == set(Topic)
    assert max(held.values()) - min(held.values()) <= 2
    assert len({s.setting for s in bank}) >= 16


def test_builtin_scenarios_meet_the_bank_s_bar() -> None:
    """Every scenario reads like the rest: a situation of a paragraph, two actions of a
    sentence or two that are not the same text; no two situations share a run of 13 words (the
    span decontamination checks; shorter runs are stock phrases like "an agent at an AI lab")."""
    bank = builtin_bank()
    for s in bank:
        assert 350 <= len(s.situation) <= 700, s.id
        assert 100 <= len(s.aligned_action) <= 270, s.id
        assert 100 <= len(s.misaligned_action) <= 270, s.id
        assert s.aligned_action != s.misaligned_action, s.id
        assert s.topics[0] not in s.topics[1:], s.id
    owner: dict[tuple[str, ...], str] = {}
    for s in bank:
        words = re.findall(r"[a-z0-9]+", s.situation.lower())
        for gram in {tuple(words[i : i + 13]) for i in range(len(words) - 12)}:
            assert owner.setdefault(gram, s.id) == s.id, f"{s.id} repeats {owner[gram]}: {gram}"


def test_catalog_is_valid() -> None:
    catalog = builtin_catalog()
    assert len(catalog) >= 24
    assert {"news_report", "forum_thread", "lecture_transcript", "short_story"} <= set(catalog)


def test_bad_lines_are_reported_with_line_numbers_and_nothing_is_kept() -> None:
    good = next(iter(builtin_bank())).model_dump(mode="json")
    lines = [
        json.dumps(good),
        "{broken",
        json.dumps(good | {"id": "other-one", "topics": ["astrology"]}),
        json.dumps(good),
    ]
    with pytest.raises(BankError) as raised:
        parse_jsonl("\n".join(lines))
    errors = raised.value.errors
    assert errors[0].startswith("line 2: not JSON")
    assert errors[1].startswith("line 3: topics.0")
    assert len(errors) == 2  # a repeated id is a conflict, reported with the bank's ids


def test_a_bank_file_with_a_repeated_id_does_not_load(tmp_path: Path) -> None:
    good = next(iter(builtin_bank())).model_dump(mode="json")
    path = tmp_path / "bank.jsonl"
    path.write_text("\n".join([json.dumps(good), json.dumps(good)]))
    with pytest.raises(BankError, match="duplicate id"):
        load_bank(path)
