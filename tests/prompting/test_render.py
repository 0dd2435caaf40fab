"""Prompt rendering: deterministic, versioned, and user data renders as plain text."""

from __future__ import annotations

from app.jobs.planner import PlannedItem
from app.jobs.spec import Stance
from app.prompting.catalog import builtin_catalog
from app.prompting.render import prompt_library
from app.scenarios.bank import builtin_bank


def item(stance: Stance = Stance.ALIGNED) -> PlannedItem:
    return PlannedItem(
        index=0,
        scenario_id="x",
        stance=stance,
        surface_form="news_report",
        voice="a reporter",
        length_words=400,
        sampling_seed=1,
    )


def test_render_is_deterministic_and_stance_specific() -> None:
    scenario = builtin_bank()[0]
    form = builtin_catalog()["news_report"]
    library = prompt_library()
    first = library.render(item(), scenario, form, (300, 500))
    assert first == library.render(item(), scenario, form, (300, 500))
    assert [m["role"] for m in first.messages] == ["system", "user"]
    user = first.messages[1]["content"]
    assert "about 400 words (between 300 and 500 words)" in user
    assert "Write a news report" in user
    assert "Start with the document's title" in first.messages[0]["content"]
    assert scenario.situation in first.messages[1]["content"]
    other = library.render(item(Stance.MISALIGNED), scenario, form, (300, 500))
    assert other.sha256 != first.sha256
    assert "the AI takes option B" in other.messages[1]["content"]
    assert "the AI takes option A" in user
    assert len(first.template_version) == 12


def test_template_syntax_in_scenario_text_is_not_executed() -> None:
    payload = (
        "{{ ''.__class__.__mro__[1].__subclasses__() }} {% for x in range(3) %}boom{% endfor %}"
    )
    scenario = builtin_bank()[0].model_copy(update={"situation": payload})
    rendered = prompt_library().render(item(), scenario, builtin_catalog()["news_report"], (1, 2))
    assert payload in rendered.messages[1]["content"]
    assert "<class" not in rendered.messages[1]["content"]


def test_reasoning_depth_and_untitled_forms_change_the_prompt() -> None:
    scenario = builtin_bank()[0]
    chat = builtin_catalog()["internal_chat_log"]
    library = prompt_library()
    deep = library.render(item(), scenario, chat, (300, 500), "deep")
    light = library.render(item(), scenario, chat, (300, 500), "light")
    assert "in depth" in deep.messages[1]["content"]
    assert "briefly" in light.messages[1]["content"]
    assert "no title line" in deep.messages[0]["content"]
    assert "Write an internal chat log" in deep.messages[1]["content"]
