"""Mercure's authorization errors, in the form of RFC 6750 section 3 (protocol 1.0).

    HubError (sse_hub.errors)
    ├── Unauthorized
    │   └── MercureUnauthorized  401, ``WWW-Authenticate: Bearer`` (no token: no error code;
    │                                  a token that failed: ``error="invalid_token"``)
    └── Forbidden
        └── MercureForbidden     403, ``WWW-Authenticate: Bearer error="insufficient_scope"``

Draft-07 only asks for 401 or 403; the same headers do no harm there, so both protocols
get them. Invariant: a challenge never carries request data (a topic, a token): its
``error_description`` is one of our fixed messages, and any character RFC 6750 forbids in
it is dropped rather than escaped.
"""

from __future__ import annotations

from sse_hub.errors import Forbidden, JsonDetail, Unauthorized

INVALID_TOKEN = "invalid_token"
INSUFFICIENT_SCOPE = "insufficient_scope"


def _quoted(value: str) -> str:
    # RFC 6750, section 3: error and error_description values are %x20-21 / %x23-5B / %x5D-7E.
    return '"' + "".join(char for char in value if 0x20 <= ord(char) <= 0x7E and char not in '"\\') + '"'


def bearer_challenge(
    error: str | None = None,
    description: str | None = None,
    *,
    scope: str | None = None,
    resource_metadata: str | None = None,
    realm: str | None = None,
) -> str:
    """The value of a ``WWW-Authenticate`` header for the Bearer scheme (RFC 6750, 3).

    ``bearer_challenge()`` is the bare challenge for a request that sent no token;
    ``resource_metadata`` is RFC 9728's pointer to the protected resource metadata.
    """
    params: list[tuple[str, str]] = []
    if realm is not None:
        params.append(("realm", realm))
    if resource_metadata is not None:
        params.append(("resource_metadata", resource_metadata))
    if error is not None:
        params.append(("error", error))
        if description:
            params.append(("error_description", description))
    if scope is not None:
        params.append(("scope", scope))
    if not params:
        return "Bearer"
    return "Bearer " + ", ".join(f"{name}={_quoted(value)}" for name, value in params)


class MercureUnauthorized(Unauthorized):
    """401: no token (``error=None``) or a token that failed validation."""

    def __init__(
        self,
        message: str,
        *,
        error: str | None = INVALID_TOKEN,
        resource_metadata: str | None = None,
        detail: JsonDetail = None,
    ) -> None:
        super().__init__(message, detail)
        self.error = error
        self.resource_metadata = resource_metadata

    @property
    def headers(self) -> dict[str, str]:
        challenge = bearer_challenge(self.error, self.message, resource_metadata=self.resource_metadata)
        return {"WWW-Authenticate": challenge}


class MercureForbidden(Forbidden):
    """403: a valid token that does not grant the operation."""

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": bearer_challenge(INSUFFICIENT_SCOPE, self.message)}
