"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from app.core.problems import documented
from app.core.routing import GuardedRoute
from app.health import metrics, service

router = APIRouter(tags=["health"], route_class=GuardedRoute)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
def readyz() -> dict[str, Any] | JSONResponse:
    """Database, broker and object storage are reachable."""
    checks = service.check_dependencies()
    body = {
        "status": "ok" if all(c == "ok" for c in checks.values()) else "unavailable",
        "checks": checks,
    }
    if body["status"] != "ok":
        return JSONResponse(body, status_code=503)
    return body


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {metrics.CONTENT_TYPE: {}}, "description": "Prometheus text"},
        **documented(401),
    },
)
def get_metrics(request: Request) -> Response:
    """The deployment's jobs, documents, LLM usage and queues, in Prometheus' text format."""
    service.check_metrics_token(request.headers.get("authorization"))
    return Response(service.metrics(), media_type=metrics.CONTENT_TYPE)
