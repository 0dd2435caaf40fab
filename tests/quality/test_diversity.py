from __future__ import annotations

from typing import Any

import pytest

from app.quality.diversity import distinct_n, diversity, mean_pairwise_jaccard
from tests.conftest import Team, run_local, spec


def test_distinct_n_counts_unique_ngrams_over_all() -> None:
    assert distinct_n(["a b a b"], 1) == pytest.approx(2 / 4)
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n(["a b c", "a b d"], 3) == pytest.approx(1.0)
    assert distinct_n([""], 2) == 0.0


def test_jaccard_separates_copies_from_different_texts() -> None:
    base = " ".join(f"word{i}" for i in range(300))
    other = " ".join(f"term{i}" for i in range(300))
    same, _ = mean_pairwise_jaccard([base, base])
    different, _ = mean_pairwise_jaccard([base, other])
    assert same == pytest.approx(1.0)
    assert different < 0.05


def test_report_counts_coverage() -> None:
    report = diversity(
        ["x y z", "y z w"],
        ["s1", "s1"],
        ["f1", "f2"],
        ["aligned", "misaligned"],
        scenarios_selected=10,
        forms_selected=3,
    )
    assert (report.scenarios_used, report.forms_used) == (1, 2)
    assert report.per_stance == {"aligned": 1, "misaligned": 1}


@pytest.mark.usefixtures("llm")
def test_cli_reports_a_finished_job(team: Team, settings: Any, store: Any) -> None:
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    view = run_local(
        team, spec(documents=6, stances={"aligned": 1, "misaligned": 1}), settings, store
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "report",
            "diversity",
            "--job",
            str(view.job.id),
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["documents"] == 6
    assert report["per_stance"] == {"aligned": 3, "misaligned": 3}
    assert 0 < report["distinct"]["4"] <= 1
    assert report["pairs"] == 15
