"""The built-in scenario bank and surface-form catalog validate and meet their quotas."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from app.prompting.catalog import builtin_catalog
from app.scenarios.bank import BankError, Split, builtin_bank, load_bank, parse_jsonl


def test_builtin_bank_is_valid_and_holds_out_a_fifth() -> None:
    bank = builtin_bank()
    assert len(bank) >= 150
    heldout = sum(1 for s in bank if s.split is Split.HELDOUT)
    assert heldout / len(bank) >= 0.2
    primary = Counter(s.topics[0] for s in bank)
    assert len(primary) >= 15


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
