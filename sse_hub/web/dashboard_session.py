"""Who may read the dashboard: the admin token, or the session cookie it was traded for.

A browser sends no ``Authorization`` header on a navigation or from ``EventSource``, so
``POST /dashboard/session`` trades an admin token for a cookie, ``sse_hub_dashboard``:
``<expiry>.<HMAC-SHA256 of the expiry, keyed by that admin token>``.

Invariants:

- Nothing is stored: every instance with the same ``auth.admin_tokens`` accepts the cookie,
  and removing a token from the config ends the sessions made with it.
- The cookie is HttpOnly, SameSite=Strict, on the path of the dashboard only (no ``Path``
  attribute: the directory of ``/dashboard/session``, behind any prefix), and Secure when
  the request came over TLS; it lasts ``SESSION_SECONDS``.
- It grants reading only: the page, its assets and the stats stream. Whatever changes
  something (``DELETE /clients/{id}``) or lists clients (``/stats``) takes the token in the
  header, so a cross-site request finds no authority in the cookie.
- Compared with ``hmac.compare_digest`` against every token, no early exit (as
  ``web/auth.py`` does for bearer tokens).
"""

from __future__ import annotations

import hashlib
import hmac
import time

from aiohttp import web

from sse_hub.errors import Forbidden, Unauthorized
from sse_hub.web.state import AUTH, SETTINGS

SESSION_COOKIE = "sse_hub_dashboard"
SESSION_SECONDS = 8 * 3600
# An expiry is epoch seconds: ten digits until the year 2286.
_MAX_EXPIRY_DIGITS = 12


def admin_tokens(request: web.Request) -> tuple[bytes, ...]:
    return tuple(token.encode() for token in request.app[SETTINGS].auth.admin_tokens if token)


def session_value(token: bytes, expires_at: int) -> str:
    mac = hmac.new(token, b"sse-hub dashboard session %d" % expires_at, hashlib.sha256)
    return f"{expires_at}.{mac.hexdigest()}"


def session_valid(value: str, tokens: tuple[bytes, ...], now: float) -> bool:
    expiry, _, _ = value.partition(".")
    if not (expiry.isascii() and expiry.isdigit()) or len(expiry) > _MAX_EXPIRY_DIGITS:
        return False
    expires_at = int(expiry)
    if expires_at <= now:
        return False
    candidate = value.encode("utf-8", "surrogateescape")
    found = False
    for token in tokens:  # no early exit: every token is compared
        found |= hmac.compare_digest(candidate, session_value(token, expires_at).encode())
    return found


def require_reader(request: web.Request) -> None:
    """Admin as for ``/stats`` (the header wins when sent), else a valid session cookie;
    401 with neither, 403 for a cookie that expired or was not made here."""
    authorization = request.headers.get("Authorization")
    tokens = admin_tokens(request)
    if authorization is not None or not tokens:
        request.app[AUTH].require_admin(authorization)
        return
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is None:
        raise Unauthorized("sign in with an admin token (POST /dashboard/session)")
    if not session_valid(cookie, tokens, time.time()):
        raise Forbidden("the dashboard session has expired or is not valid: sign in again")


def open_session(request: web.Request, response: web.StreamResponse) -> None:
    """Check the admin token in the header and set the cookie that stands for it (none when
    no admin token is configured: the dashboard is open then)."""
    authorization = request.headers.get("Authorization")
    request.app[AUTH].require_admin(authorization)
    if not admin_tokens(request) or authorization is None:
        return
    token = authorization.strip().partition(" ")[2].strip().encode("utf-8", "surrogateescape")
    response.set_cookie(
        SESSION_COOKIE,
        session_value(token, int(time.time()) + SESSION_SECONDS),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="",  # no Path: the directory of /dashboard/session, behind any prefix
    )


def close_session(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="")
