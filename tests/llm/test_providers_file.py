"""Named providers from the providers file: limits and prices per model, checked at start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.core.errors import ConfigurationError, UnknownReference
from app.llm.provider import resolve_provider
from app.llm.providers_file import load_providers
from tests.conftest import Team, run_local, spec
from tests.llm_server import LLMTestServer
from tests.test_cli import embedded_env, priorforge

__all__ = ["embedded_env"]  # the fixture, used by name

GOOD = """
prices_version = "2026-12-01"

[providers.cheap]
base_url = "{url}"
api_key_env = "CHEAP_KEY"
default_model = "small"
rpm = 600
tpm = 100000
concurrency = 4

[providers.cheap.models.small]
prompt_per_mtok = 1.0
completion_per_mtok = 4.0

[providers.cheap.models.large]
prompt_per_mtok = 5.0
completion_per_mtok = 20.0
"""


def write(tmp_path: Path, text: str, url: str = "http://127.0.0.1:9/v1") -> Path:
    path = tmp_path / "providers.toml"
    path.write_text(text.replace("{url}", url))
    return path


def test_a_named_provider_brings_its_limits_and_each_models_price(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHEAP_KEY", "sk-cheap")
    configured = settings.model_copy(update={"providers_file": write(tmp_path, GOOD)})
    small = resolve_provider(configured, "cheap")
    assert (small.model, small.api_key, small.rpm, small.tpm, small.concurrency) == (
        "small",
        "sk-cheap",
        600,
        100_000,
        4,
    )
    assert (small.price_prompt_per_mtok, small.prices_version) == (1.0, "2026-12-01")
    large = resolve_provider(configured, "cheap", "large")
    assert large.cost_usd(1_000_000, 1_000_000) == 25.0
    with pytest.raises(UnknownReference, match="no price for model 'huge'.*add it"):
        resolve_provider(configured, "cheap", "huge")
    with pytest.raises(UnknownReference, match="this server offers: 'default', 'cheap'"):
        resolve_provider(configured, "other")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not = [toml", "not TOML"),
        (GOOD.replace('default_model = "small"', 'default_model = "tiny"'), "'tiny' has no price"),
        (
            GOOD.replace("[providers.cheap]", "[providers.default]").replace(
                "providers.cheap.", "providers.default."
            ),
            "name it otherwise",
        ),
        (GOOD.replace("prompt_per_mtok = 1.0", "prompt_per_mtok = -1"), "greater than or equal"),
        (GOOD, "set CHEAP_KEY"),
    ],
)
def test_a_bad_file_names_its_problem(
    tmp_path: Path, text: str, problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHEAP_KEY", raising=False)
    with pytest.raises(ConfigurationError, match=problem):
        load_providers(write(tmp_path, text), {})


def test_a_job_on_a_named_provider_costs_its_models_price(
    tmp_path: Path,
    llm: LLMTestServer,
    team: Team,
    settings: Any,
    store: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHEAP_KEY", "sk-cheap")
    configured = settings.model_copy(update={"providers_file": write(tmp_path, GOOD, llm.base_url)})
    view = run_local(team, spec(documents=3, provider="cheap", model="large"), configured, store)
    assert view.job.status == "succeeded", view.job.error
    usage = view.usage
    expected = (usage.prompt_tokens * 5.0 + usage.completion_tokens * 20.0) / 1e6
    assert usage.cost_usd == pytest.approx(expected)


def test_serve_refuses_to_start_on_a_bad_providers_file(
    tmp_path: Path, embedded_env: dict[str, str]
) -> None:
    path = write(tmp_path, GOOD)
    result = priorforge(
        "serve",
        "--port",
        "0",
        env=embedded_env | {"PRIORFORGE_PROVIDERS_FILE": str(path)},
        timeout=60,
    )
    assert result.returncode == 2
    assert "set CHEAP_KEY" in result.stderr
