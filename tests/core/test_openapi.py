"""The OpenAPI document tells the truth, and every endpoint sits behind the guard.

These walk the whole application, so an endpoint added later without the guard, with an
unbounded integer or with an undocumented error shape fails here, not in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

INT32_MAX = 2**31 - 1
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    from app.main import create_app

    return create_app().openapi()


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def subschemas(schema: dict[str, Any], root: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Every schema node reachable from ``root``, with a path for messages."""
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [("", root)]
    while stack:
        where, node = stack.pop()
        if not isinstance(node, dict) or id(node) in seen:
            continue
        seen.add(id(node))
        node = resolve(schema, node)
        yield where, node
        for key in ("properties", "$defs"):
            stack.extend((f"{where}.{k}", v) for k, v in node.get(key, {}).items())
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                stack.append((f"{where}[]", node[key]))
        for key in ("anyOf", "oneOf", "allOf"):
            stack.extend((where, v) for v in node.get(key, []))


def test_every_route_is_guarded() -> None:
    from fastapi.routing import APIRoute, iter_route_contexts

    from app.admin.routing import AdminRoute
    from app.core.routing import GuardedRoute
    from app.main import create_app

    routes = [c.original_route for c in iter_route_contexts(create_app().routes)]
    api_routes = [r for r in routes if isinstance(r, APIRoute)]
    assert len(api_routes) > 20
    # The API's routes check a bearer key; the dashboard's pages a session and its CSRF token.
    unguarded = [
        r.path
        for r in api_routes
        if not isinstance(r, GuardedRoute)
        and not (isinstance(r, AdminRoute) and r.path.startswith("/admin"))
    ]
    assert unguarded == []
    assert any(isinstance(r, AdminRoute) for r in api_routes)


def test_every_v1_operation_needs_a_bearer_key(schema: dict[str, Any]) -> None:
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for method, path, operation in operations(schema):
        if path.startswith("/v1/"):
            assert operation.get("security") == [{"bearerAuth": []}], (method, path)
            assert {"401", "403"} <= set(operation["responses"]), (method, path)


def test_every_error_is_documented_as_a_problem(schema: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for method, path, operation in operations(schema):
        responses = operation["responses"]
        assert "500" in responses, (method, path)
        for code, response in responses.items():
            if int(code) >= 400 and method != "HEAD":  # a HEAD answer has no body
                assert list(response["content"]) == [PROBLEM], (method, path, code)
        if operation.get("requestBody"):
            assert {"413", "415", "422"} <= set(responses), (method, path)
            assert operation["x-max-body-bytes"] >= 1 << 20
        if "{" in path:
            assert "404" in responses, (method, path)


def test_every_integer_parameter_and_field_is_bounded(schema: dict[str, Any]) -> None:
    """Parameters fit a 32-bit column; body integers at least a 64-bit one."""
    unbounded = []
    for method, path, operation in operations(schema):
        roots = [(p["name"], p["schema"], INT32_MAX) for p in operation.get("parameters", [])]
        for content in operation.get("requestBody", {}).get("content", {}).values():
            roots.append(("(body)", content.get("schema", {}), 2**63 - 1))
        for name, root, largest in roots:
            for where, node in subschemas(schema, root):
                if (
                    node.get("type") == "integer"
                    and not node.get("maximum", largest + 1) <= largest
                ):
                    unbounded.append(f"{method} {path} {name}{where}")
    assert unbounded == []


def test_every_string_parameter_is_bounded(schema: dict[str, Any]) -> None:
    unbounded = []
    for method, path, operation in operations(schema):
        for parameter in operation.get("parameters", []):
            for where, node in subschemas(schema, parameter["schema"]):
                if node.get("type") == "string" and not (
                    "maxLength" in node or "pattern" in node or "enum" in node or "format" in node
                ):
                    unbounded.append(f"{method} {path} {parameter['name']}{where}")
    assert unbounded == []


def test_status_filters_list_their_values(schema: dict[str, Any]) -> None:
    def status_values(path: str) -> set[str]:
        parameter = next(
            p for p in schema["paths"][path]["get"]["parameters"] if p["name"] == "status"
        )
        return {v for _w, n in subschemas(schema, parameter["schema"]) for v in n.get("enum", [])}

    assert status_values("/v1/jobs") >= {"queued", "running", "succeeded", "failed", "cancelled"}
    assert status_values("/v1/jobs/{job_id}/documents") == {
        "accepted",
        "rejected",
        "duplicate",
        "failed",
    }
