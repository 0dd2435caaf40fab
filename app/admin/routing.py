"""The dashboard's guard, in front of every /admin page, as ``GuardedRoute`` is for the API.

Before a page's code runs, in this order:
1. query and path parameters are checked for text a database cannot store;
2. a form post's media type (urlencoded only) and size (64 KiB) are checked, and the form is
   parsed once, each value checked too;
3. the session cookie is read (a signed-in admin, or none): a page that needs one redirects
   to the sign-in page (htmx requests get ``HX-Redirect`` instead, so an expired session
   inside a partial update still lands there);
4. every POST carries the session's CSRF token (a form field or the ``X-CSRF-Token``
   header that the pages make htmx send) and, when the browser names one, our own origin.
Every response gets a strict Content-Security-Policy (no inline script or style) and is
never cached; a signed-in response re-signs the cookie, which keeps an active session open.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.admin import session as sessions
from app.admin.session import AdminSession
from app.admin.templating import error_page
from app.core.auth import end_session
from app.core.db import get_sessionmaker
from app.core.errors import Forbidden, InvalidRequest, PriorForgeError, UnsupportedMediaType
from app.core.routing import _check_parameters, _media_type, _read_limited
from app.core.settings import get_settings
from app.core.text import text_problem

FORM = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 64 * 1024
PUBLIC = "priorforge_admin_public"  # set on the sign-in endpoints: no session needed
LOGIN_COOKIE_PATH = "/admin/login"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass
class AdminRequestState:
    db: Session
    admin: AdminSession | None
    form: dict[str, str] = field(default_factory=dict)
    signed_out: bool = False


def public(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    setattr(endpoint, PUBLIC, True)
    return endpoint


def state_of(request: Request) -> AdminRequestState:
    state = request.state.admin_state
    assert isinstance(state, AdminRequestState)
    return state


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def sign_in_redirect(request: Request) -> Response:
    """To the sign-in page, which sends the admin back to the page they were on: for a
    partial update (htmx), the page that asked for it."""
    page = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if is_htmx(request):
        current = urlsplit(request.headers.get("hx-current-url", ""))
        page = current.path + (f"?{current.query}" if current.query else "")
    target = "/admin/login"
    if page.startswith("/admin") and not page.startswith(target) and request.method == "GET":
        target += "?next=" + quote(page, safe="")
    if is_htmx(request):
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


class AdminRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        is_public = bool(getattr(self.endpoint, PUBLIC, False))

        async def guarded(request: Request) -> Response:
            _check_parameters(request)
            form = await _read_form(request) if request.method == "POST" else {}
            db = get_sessionmaker()()
            try:
                settings = get_settings()
                cookie = request.cookies.get(sessions.COOKIE)
                admin = await run_in_threadpool(sessions.decode, db, cookie, settings)
                if admin is None and not is_public:
                    await run_in_threadpool(end_session, db, commit=False)
                    return _secured(sign_in_redirect(request))
                try:
                    if request.method == "POST":
                        _check_csrf(request, form, admin, is_public)
                    state = AdminRequestState(db, admin, form)
                    request.state.admin_state = state
                    response = await handler(request)
                except PriorForgeError as refused:
                    state = AdminRequestState(db, admin, form)
                    response = error_page(request, refused, admin.csrf if admin else "")
                if state.admin is not None and not state.signed_out:
                    # Re-signed with the secret the cookie was read with: no I/O.
                    set_session_cookie(response, sessions.encode(db, state.admin))
                await run_in_threadpool(end_session, db, commit=response.status_code < 400)
            except BaseException:
                await run_in_threadpool(end_session, db, commit=False)
                raise
            return _secured(response)

        return guarded


def _check_csrf(
    request: Request, form: dict[str, str], admin: AdminSession | None, is_public: bool
) -> None:
    _check_origin(request)
    if is_public:  # the sign-in form: its own token, in a cookie of its own
        expected = request.cookies.get(sessions.LOGIN_COOKIE, "")
    else:
        expected = admin.csrf if admin is not None else ""
    given = form.get("csrf_token") or request.headers.get("x-csrf-token")
    if not expected or not sessions.same_token(given, expected):
        raise Forbidden(
            "this form's CSRF token is missing or stale: reload the page and send it again"
        )


def _secured(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def set_session_cookie(response: Response, value: str) -> None:
    response.set_cookie(
        sessions.COOKIE, value, httponly=True, secure=True, samesite="strict", path="/admin"
    )


def _check_origin(request: Request) -> None:
    """A browser names the origin of the page a post came from: it must be this host (against
    CSRF, beside the token). Behind a TLS proxy the scheme differs, so only hosts compare."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    if urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden(f"a form posted from {origin} is refused: post it from this dashboard")


async def _read_form(request: Request) -> dict[str, str]:
    media_type = _media_type(request.headers.get("content-type"))
    body = await _read_limited(
        request, MAX_FORM_BYTES, f"a dashboard form may be at most {MAX_FORM_BYTES} bytes"
    )
    if not body:
        return {}
    if media_type != FORM:
        raise UnsupportedMediaType(
            f"dashboard forms are sent as {FORM}; got {media_type or 'no Content-Type'}",
            accepted=[FORM],
        )
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=1000)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(f"the form could not be read: {exc}") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        problem = text_problem(name) or text_problem(value)
        if problem is not None:
            raise InvalidRequest(f"form field {name!r}: {problem}")
        # A field sent several times (checkboxes) is joined by newlines, in order.
        form[name] = f"{form[name]}\n{value}" if name in form else value
    return form
