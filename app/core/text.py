"""Values a database can store as text: no NUL characters, no unpaired surrogates. Pure.

PostgreSQL's text cannot hold U+0000, and a lone UTF-16 surrogate (which JSON's ``\\ud800``
escape can produce) is not valid Unicode, so neither can be encoded for the wire. Every
request string is checked here before it reaches a query.
"""

from __future__ import annotations

NUL = "contains a NUL character (\\u0000)"
# JSON Schema patterns, written so that ECMA, Python and Rust regexes read them alike (their
# "\s" classes differ beyond ASCII). NO_NUL: no NUL at all. not_blank(n): no NUL, and at least
# n characters from the first one that is not ASCII whitespace.
NO_NUL = r"^[^\x00]*$"
_SPACE = r"\t\n\x0b\x0c\r "


def not_blank(min_chars: int = 1) -> str:
    return rf"^[{_SPACE}]*[^{_SPACE}\x00][^\x00]{{{min_chars - 1},}}$"


NOT_BLANK = not_blank()
SURROGATE = "contains an unpaired surrogate (not valid Unicode)"


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None."""
    if "\x00" in value:
        return NUL
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE
    return None


def find_unstorable(value: object) -> tuple[str, str] | None:
    """The first string inside a parsed JSON value that cannot be stored: (path, problem).

    The path is dotted (``sources.0.text``); a bad object key is named by its parent's path.
    Iterative, so a deeply nested document cannot exhaust the stack.
    """
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        path, current = stack.pop()
        if isinstance(current, str):
            problem = text_problem(current)
            if problem is not None:
                return path or "(body)", problem
        elif isinstance(current, dict):
            children: list[tuple[str, object]] = []
            for key, child in current.items():
                problem = text_problem(key) if isinstance(key, str) else None
                if problem is not None:
                    return (path or "(body)"), f"has a key that {problem}"
                children.append((f"{path}.{key}" if path else str(key), child))
            stack.extend(reversed(children))
        elif isinstance(current, list):
            stack.extend(
                (f"{path}.{i}" if path else str(i), child)
                for i, child in reversed(list(enumerate(current)))
            )
    return None


def _number(literal: str) -> float | int:
    """A JSON number with a fraction or exponent; integral ones (``3.0``, ``1e3``) become
    ints: JSON Schema counts 3.0 as the integer 3, and so do request schemas."""
    value = float(literal)
    return int(value) if value.is_integer() else value


def _no_constant(literal: str) -> float:
    raise InvalidJSON(f"{literal} is not a JSON number")


class InvalidJSON(ValueError):
    """Text that is not JSON this service can take, with a message that says where."""


def parse_json(data: str | bytes) -> object:
    """``json.loads`` whose every failure is an ``InvalidJSON`` naming the position.

    Besides syntax errors, ``json.loads`` raises ValueError for integers longer than Python's
    digit limit and RecursionError for deeply nested arrays; both are bad input, not bugs.
    """
    import json

    try:
        return json.loads(data, parse_float=_number, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InvalidJSON(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except UnicodeDecodeError as exc:
        raise InvalidJSON(f"not UTF-8 (byte {exc.start})") from None
    except RecursionError:
        raise InvalidJSON("nested too deeply") from None
    except ValueError as exc:  # e.g. "Exceeds the limit (4300 digits) for integer string"
        raise InvalidJSON(str(exc)) from None
