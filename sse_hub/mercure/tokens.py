"""Where a Mercure request's token comes from: one token, chosen by a fixed precedence.

Sources, highest first (draft-07 section "Authorization", 1.0 "Presenting the Access
Token"): the ``Authorization: Bearer`` header, then the ``authorization`` query parameter
(draft-07 requests only: 1.0 keeps tokens out of URLs), then the cookie
``__Secure-mercure_access_token`` (1.0), then ``mercureAuthorization`` (draft-07).
The first source present is used and the others are ignored, never merged or retried:
a bad token in a higher source is not rescued by a good one lower down.

"Present" means: an ``Authorization`` header with the Bearer scheme, even with an empty
or malformed token (a present-but-bad token must be refused, never treated as anonymous);
a query parameter or cookie with a non-empty value (browsers keep cleared cookies as empty
strings). A header with another scheme (``Basic``, from a proxy) is not a bearer token and
is passed over.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from sse_hub.mercure.protocol import COOKIE, LEGACY_COOKIE


class TokenSource(enum.Enum):
    HEADER = "header"
    QUERY = "query"
    COOKIE = "cookie"


@dataclass(frozen=True, slots=True)
class PresentedToken:
    value: str
    source: TokenSource

    def __repr__(self) -> str:  # never a credential in a log line or a traceback
        return f"PresentedToken(source={self.source.value}, chars={len(self.value)})"


def select_token(
    authorization: str | None,
    query_token: str | None = None,
    cookies: Mapping[str, str] | None = None,
    *,
    allow_query: bool = True,
    cookie_names: tuple[str, ...] = (COOKIE, LEGACY_COOKIE),
) -> PresentedToken | None:
    """The token to verify, or None when the request presents none.

    ``authorization``: the ``Authorization`` header; ``query_token``: the ``authorization``
    query parameter (honoured only with ``allow_query``); ``cookies``: the request's
    cookies, looked up in ``cookie_names`` order.
    """
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer":
            return PresentedToken(token.strip(), TokenSource.HEADER)
    if allow_query and query_token:
        return PresentedToken(query_token, TokenSource.QUERY)
    for name in cookie_names:
        value = (cookies or {}).get(name)
        if value:
            return PresentedToken(value, TokenSource.COOKIE)
    return None
