"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.core.routing import GuardedRoute
from app.health import service

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
