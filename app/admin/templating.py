"""The dashboard's templates (autoescaped), and its error page."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request, Response
from fastapi.templating import Jinja2Templates

from app.core.errors import PriorForgeError

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


def error_page(request: Request, error: PriorForgeError, csrf: str) -> Response:
    """A refused request, as a page, or for htmx as a message in the page's flash area."""
    fragment = request.headers.get("hx-request") == "true"
    response = TEMPLATES.TemplateResponse(
        request,
        "_error.html" if fragment else "error.html",
        {"error": error, "admin": None, "csrf": csrf},
        status_code=error.status,
    )
    if fragment:
        response.headers["HX-Retarget"] = "#flash"
        response.headers["HX-Reswap"] = "innerHTML"
    return response
