"""The OpenAPI document, made to tell the truth about what the guard and handlers send.

FastAPI documents a 422 of its own shape and nothing else; this service answers every error
as problem+json (app/core/problems.py), authenticates with bearer keys and refuses bodies by
size and media type (app/core/routing.py). The statuses each operation can answer are derived
from the same route attributes the guard acts on, so the two cannot drift apart.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import iter_route_contexts

from app.core.body import MAX_BODY_KEY
from app.core.problems import PROBLEM_JSON, REQUEST_ID_HEADER
from app.core.routing import GuardedRoute
from app.core.text import NO_NUL

SECURITY_SCHEME = "bearerAuth"
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An error, as RFC 9457 problem details.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "A URI naming the kind of problem."},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "What went wrong and how to fix it."},
        "request_id": {"type": "string", "description": "Quote it when reporting a problem."},
        "errors": {
            "type": "array",
            "description": "What is invalid: a field, or a line of an uploaded file.",
            "items": {
                "type": "object",
                "required": ["message"],
                "properties": {
                    "field": {"type": "string"},
                    "line": {"type": "integer"},
                    "message": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            document_errors(schema, guarded_routes(app))
            document_text_rules(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def guarded_routes(app: FastAPI) -> list[tuple[str, GuardedRoute]]:
    """(full path, route) of every guarded route, through included routers."""
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, GuardedRoute) and context.path_format is not None:
            found.append((context.path_format, route))
    return found


def error_statuses(route: GuardedRoute, operation: dict[str, Any]) -> set[int]:
    """What the guard and the problem handlers can answer for this operation. An
    authenticated one reads its key from the database, which may be unreachable (503)."""
    statuses = {500}
    if route.required_role is not None:
        statuses |= {401, 403, 429, 503}  # 429: the team's API request rate
    if route.takes_body:
        statuses |= {413, 415, 422}
    if operation.get("parameters"):
        statuses.add(422)
    if "{" in route.path:
        statuses.add(404)
    return statuses


def document_errors(schema: dict[str, Any], routes: list[tuple[str, GuardedRoute]]) -> None:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas["Problem"] = PROBLEM_SCHEMA
    components["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: 'priorforge keys create --team T --role R' prints one.",
        }
    }
    problem_content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    request_id = {
        REQUEST_ID_HEADER: {
            "description": "This request's id; it is also in every problem body.",
            "schema": {"type": "string"},
        }
    }
    for path, route in routes:
        for method in route.methods or ():
            operation = schema["paths"][path][method.lower()]
            if route.required_role is not None:
                operation["security"] = [{SECURITY_SCHEME: []}]
            if route.takes_body:
                operation[MAX_BODY_KEY] = route.max_body_bytes
            responses: dict[str, Any] = operation.setdefault("responses", {})
            declared = {int(code) for code in responses if code.isdigit() and int(code) >= 400}
            for status in sorted(declared | error_statuses(route, operation)):
                entry = responses.setdefault(str(status), {})
                if entry.get("description") in (None, "", "Validation Error"):
                    entry["description"] = HTTPStatus(status).phrase
                entry["content"] = problem_content
                if status == 401:
                    entry["headers"] = {
                        "WWW-Authenticate": {"schema": {"type": "string"}, "required": True}
                    }
            for entry in responses.values():
                entry.setdefault("headers", {}).update(request_id)
                if method == "HEAD":
                    entry.pop("content", None)  # HEAD answers carry no body


def document_text_rules(schema: dict[str, Any]) -> None:
    """Say in every request string's schema what the guard enforces: no NUL characters.

    Strings with a pattern, format or enum already exclude NUL (the patterns that could
    match it are written with ``NOT_BLANK``); the rest get ``NO_NUL``.
    """
    components = schema.get("components", {}).get("schemas", {})
    seen: set[int] = set()
    stack: list[Any] = []
    for methods in schema["paths"].values():
        for operation in methods.values():
            stack.extend(p.get("schema") for p in operation.get("parameters", []))
            for content in operation.get("requestBody", {}).get("content", {}).values():
                stack.append(content.get("schema"))
    while stack:
        node = stack.pop()
        if not isinstance(node, dict) or id(node) in seen:
            continue
        seen.add(id(node))
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            stack.append(components.get(ref.rsplit("/", 1)[1]))
            continue
        if node.get("type") == "string" and not {"pattern", "format", "enum", "const"} & set(node):
            node["pattern"] = NO_NUL
        for key in ("properties", "patternProperties"):
            stack.extend(node.get(key, {}).values())
        for key in ("items", "additionalProperties", "not"):
            stack.append(node.get(key))
        for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            stack.extend(node.get(key, []))
