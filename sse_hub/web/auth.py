"""Who may publish, administer and subscribe: bearer tokens and subscriber JWTs.

The matrix (docs/security.md):

- ``auth.publish_tokens`` set: ``/broadcast`` and ``/tickets`` need a publish or an admin
  token. Only ``auth.admin_tokens`` set: ``/broadcast`` stays open.
- ``auth.admin_tokens`` set: ``/stats``, ``/metrics``, ``DELETE /clients`` need an admin
  token (``/tickets`` accepts it too).
- No token: 401. A token that is not one of them: 403. Tokens are compared with
  ``hmac.compare_digest`` against every configured token, so timing reveals nothing.
- ``auth.subscriber_jwt`` (a secret, or a public key file for RS256/ES256) set: a stream
  needs a JWT (``Authorization: Bearer``, ``?token=`` or cookie ``sse_hub_token``) whose
  ``channels`` claim covers every requested channel, or a one-time ticket. A token is
  accepted strictly before its ``exp`` (the leeway covers ``nbf``/``iat`` only: a stream
  opened in the leeway would be closed at once), and the stream is closed when it passes.
  Tickets are a way around the JWT, so with ``subscriber_jwt`` set and no publish or admin
  token configured nobody may issue them.

Header values reach us as ``str`` decoded with ``surrogateescape`` (bytes that are not
UTF-8 become lone surrogates); every credential is handled as bytes or refused, so such a
header is a 401/403, never an encoding error.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

import jwt

from sse_hub.config.checks import JWT_LEEWAY_SECONDS, token_expiry
from sse_hub.config.settings import AuthConfig
from sse_hub.errors import Forbidden, Unauthorized

TOKEN_COOKIE = "sse_hub_token"


@dataclass(frozen=True, slots=True)
class Grant:
    """What a subscriber's credential allows: channel patterns and an expiry (epoch s)."""

    patterns: tuple[str, ...]
    expires_at: float | None = None

    def allows(self, channel: str) -> bool:
        return any(pattern_matches(pattern, channel) for pattern in self.patterns)


#: What a subscriber may do when subscriber auth is off: every channel, no expiry.
OPEN_GRANT = Grant(("*",))


def pattern_matches(pattern: str, channel: str) -> bool:
    """``*`` matches every channel; ``stocks.*`` matches ``stocks.a`` and ``stocks.a.b``,
    not ``stocks``; anything else matches itself."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        prefix = pattern[:-1]
        return channel.startswith(prefix) and len(channel) > len(prefix)
    return pattern == channel


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _matches_any(token: str, tokens: tuple[bytes, ...]) -> bool:
    # surrogateescape gives back the bytes the client sent, whatever they are.
    candidate = token.encode("utf-8", "surrogateescape")
    found = False
    for known in tokens:  # no early exit: every token is compared
        found |= hmac.compare_digest(candidate, known)
    return found


class Authenticator:
    def __init__(self, config: AuthConfig) -> None:
        self._publish = tuple(token.encode() for token in config.publish_tokens if token)
        self._admin = tuple(token.encode() for token in config.admin_tokens if token)
        jwt_config = config.subscriber_jwt
        self._algorithms = list(jwt_config.algorithms)
        self._jwt_key: str | None = jwt_config.secret
        if jwt_config.public_key_file:
            self._jwt_key = Path(jwt_config.public_key_file).read_text(encoding="utf-8")

    @property
    def subscribers_need_credentials(self) -> bool:
        return self._jwt_key is not None

    def require_publisher(self, authorization: str | None) -> None:
        if self._publish:
            self._require(authorization, self._publish + self._admin, "a publish token")

    def require_admin(self, authorization: str | None) -> None:
        if self._admin:
            self._require(authorization, self._admin, "an admin token")

    def require_ticket_issuer(self, authorization: str | None) -> None:
        """Tickets are issued to publishers and admins; open only when neither is set and
        subscribers need no credential (else an open ``/tickets`` would hand anyone a way
        around the subscriber JWT)."""
        tokens = self._publish + self._admin
        if tokens:
            self._require(authorization, tokens, "a publish or admin token")
        elif self.subscribers_need_credentials:
            raise Forbidden(
                "tickets cannot be issued: auth.subscriber_jwt is set but no auth.publish_tokens or auth.admin_tokens"
            )

    @staticmethod
    def _require(authorization: str | None, tokens: tuple[bytes, ...], what: str) -> None:
        token = bearer_token(authorization)
        if token is None:
            raise Unauthorized(f"send {what} as 'Authorization: Bearer <token>'")
        if not _matches_any(token, tokens):
            raise Forbidden("the token is not valid here")

    def subscriber_grant(self, token: str | None) -> Grant:
        """Decode a subscriber JWT; 401 when missing or invalid."""
        if self._jwt_key is None:
            return OPEN_GRANT
        if not token:
            raise Unauthorized("this hub needs a subscriber token (Authorization: Bearer, ?token= or a ticket)")
        if not token.isascii():
            # A JWT is base64url and dots; PyJWT would fail to encode a lone surrogate.
            raise Unauthorized("the subscriber token is not valid")
        try:
            claims = jwt.decode(token, self._jwt_key, algorithms=self._algorithms, leeway=JWT_LEEWAY_SECONDS)
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("the subscriber token has expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("the subscriber token is not valid") from exc
        patterns = claims.get("channels")
        if isinstance(patterns, str):
            patterns = [patterns]
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise Forbidden("the subscriber token has no 'channels' claim (a list of channel patterns)")
        return Grant(tuple(patterns), _expiry(claims.get("exp")))


def _expiry(exp: object) -> float | None:
    """When the stream must end: the token's ``exp``, which PyJWT has already checked reads
    as an integer (``1700000000``, ``1.7e9`` or ``"1700000000"``); 401 once it has passed."""
    if not isinstance(exp, int | float | str):
        return None  # absent (PyJWT refuses any other type)
    expires_at = token_expiry(exp)
    if expires_at is None:
        raise Unauthorized("the subscriber token has expired")
    return expires_at


def check_channels(grant: Grant, channels: tuple[str, ...]) -> None:
    denied = [channel for channel in channels if not grant.allows(channel)]
    if denied:
        raise Forbidden("the credential does not allow these channels", {"channels": denied})
