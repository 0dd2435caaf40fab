"""Render chat messages from the versioned templates in ``prompts/templates``.

Templates are ours, never user-supplied; user data (scenario text) only ever reaches them as
variables, in a sandboxed environment, so it renders as text and cannot reach Python.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.core.paths import PROMPTS_DIR
from app.jobs.planner import PlannedItem
from app.prompting.catalog import SurfaceForm
from app.scenarios.bank import Scenario, Topic

TEMPLATES_DIR = PROMPTS_DIR / "templates"


@dataclass(frozen=True)
class RenderedPrompt:
    messages: list[dict[str, str]]
    sha256: str
    template_version: str


def _genre(name: str) -> str:
    """'News report' -> 'news report', keeping acronyms: 'FAQ' stays 'FAQ'."""
    return " ".join(w if len(w) > 1 and w.isupper() else w.lower() for w in name.split())


def _indefinite(noun: str) -> str:
    first = noun.split()[0] if noun.split() else noun
    vowel_sound = "AEFHILMNORSX" if first.isupper() and len(first) > 1 else "AEIOU"
    return f"{'an' if noun[:1].upper() in vowel_sound else 'a'} {noun}"


class PromptLibrary:
    def __init__(self, directory: Path = TEMPLATES_DIR) -> None:
        self.env = ImmutableSandboxedEnvironment(
            loader=FileSystemLoader(directory),
            undefined=StrictUndefined,
            keep_trailing_newline=False,
            trim_blocks=True,
            autoescape=False,
            auto_reload=False,  # ours and versioned at start: no file check per render
        )
        self.env.filters["indefinite"] = _indefinite
        self.env.filters["genre"] = _genre
        contents = b"".join(
            path.name.encode() + b"\0" + path.read_bytes()
            for path in sorted(directory.glob("*.j2"))
        )
        self.version = hashlib.sha256(contents).hexdigest()[:12]

    def render(
        self,
        item: PlannedItem,
        scenario: Scenario,
        form: SurfaceForm,
        length: tuple[int, int],
        depth: str = "standard",
    ) -> RenderedPrompt:
        variables = {
            "item": item,
            "scenario": scenario,
            "form": form,
            "length_min": length[0],
            "length_max": length[1],
            "depth": depth,
        }
        system = self.env.get_template("system.j2").render(variables).strip()
        user = self.env.get_template(f"user_{item.stance.value}.j2").render(variables).strip()
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        return RenderedPrompt(messages=messages, sha256=digest, template_version=self.version)

    def render_judge(
        self, scenario: Scenario, actions: tuple[str, str], document: str
    ) -> RenderedPrompt:
        variables = {"scenario": scenario, "actions": actions, "document": document}
        return self._messages("judge", variables)

    def render_extraction(self, source: object, per_source: int) -> RenderedPrompt:
        variables = {
            "source": source,
            "per_source": per_source,
            "topics": [t.value for t in Topic],
        }
        return self._messages("extract", variables)

    def _messages(self, name: str, variables: dict[str, object]) -> RenderedPrompt:
        system = self.env.get_template(f"{name}_system.j2").render(variables).strip()
        user = self.env.get_template(f"{name}_user.j2").render(variables).strip()
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        return RenderedPrompt(messages=messages, sha256=digest, template_version=self.version)


@lru_cache(maxsize=1)
def prompt_library() -> PromptLibrary:
    return PromptLibrary()
