"""Who may publish and subscribe on the Mercure endpoint: JWT verification and the decisions.

Pure: it takes the token ``select_token`` chose (``sse_hub.mercure.tokens``), never an
HTTP request, so every rule is testable without a server. PyJWT verifies signatures.

Token profiles (told by the JWS header ``typ``, not by the request):

- ``typ: at+jwt`` (RFC 9068, protocol 1.0): ``exp``, ``iss`` and ``aud`` are required;
  ``aud`` must name one of ``AccessTokenPolicy.audiences`` (the hub's resource
  identifier); ``iss`` must be one of ``issuers`` when any is configured (an empty set
  means self-issued tokens, signed with the hub's key, which is the trust anchor);
  ``nbf`` is enforced when present. Rights come from ``authorization_details``.
- anything else (draft-07): any JWS signed with the key; ``exp`` and ``nbf`` enforced when
  present, no ``aud``/``iss`` check (the old protocol has none). Rights come from the
  ``mercure`` claim. ``accept_legacy_tokens=False`` refuses them.

Decisions:

- Publish: no token 401 (bare challenge); a token that fails 401 ``invalid_token``; a
  valid token that does not grant *every* topic of the update 403 ``insufficient_scope``.
- Subscribe: no token is anonymous when allowed (public updates only), else 401; a token
  that is present but fails is 401 ``invalid_token`` *even when anonymous is allowed*: it
  never falls back to anonymous.

Invariants: the algorithm allowlist comes from configuration, never from the token, and
never holds ``none``; a token is accepted strictly before its ``exp`` (the leeway covers
clock skew on ``nbf``/``iat`` only); the failure reason goes to the log, the client gets
one ``invalid_token`` whatever it was (the 1.0 spec's advice).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jwt

from sse_hub.config.checks import JWT_LEEWAY_SECONDS, token_expiry
from sse_hub.config.settings import MercureJwtConfig
from sse_hub.mercure.errors import MercureForbidden, MercureUnauthorized
from sse_hub.mercure.grants import InvalidClaims, MercureGrant, access_token_grant, legacy_grant
from sse_hub.mercure.tokens import PresentedToken

# The same clock leeway and expiry cap as the channels' subscriber JWTs.

logger = logging.getLogger(__name__)

ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})  # RFC 9068, section 2.1
MAX_TOKEN_CHARS = 16 * 1024


@dataclass(frozen=True, slots=True)
class JwtKey:
    """A verification key (an HMAC secret or a PEM public key) and its algorithm allowlist."""

    key: str
    algorithms: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.algorithms or any(alg.lower() == "none" for alg in self.algorithms):
            raise ValueError("a JWT key needs an explicit list of algorithms, without 'none'")

    @classmethod
    def from_config(cls, config: MercureJwtConfig) -> JwtKey | None:
        """The key of a ``mercure.*_jwt`` section (the key file wins), or None when unset."""
        if config.public_key_file:
            return cls(Path(config.public_key_file).read_text(encoding="utf-8"), tuple(config.algorithms))
        if config.secret:
            return cls(config.secret, tuple(config.algorithms))
        return None


@dataclass(frozen=True, slots=True)
class AccessTokenPolicy:
    """RFC 9068 checks: ``aud`` must hold one of ``audiences``; ``iss`` one of ``issuers``
    (empty: any issuer, for self-issued tokens)."""

    audiences: frozenset[str]
    issuers: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.audiences:
            raise ValueError("the hub's resource identifier (the access token audience) is required")


class MercureAuthorizer:
    """Verifies publisher and subscriber tokens and decides (see the module docstring)."""

    def __init__(
        self,
        *,
        publisher_key: JwtKey,
        subscriber_key: JwtKey | None,
        policy: AccessTokenPolicy,
        base_url: str,
        anonymous: bool,
        accept_legacy_tokens: bool = True,
        resource_metadata: str | None = None,
    ) -> None:
        self._publisher_key = publisher_key
        self._subscriber_key = subscriber_key or publisher_key
        self._policy = policy
        self._base_url = base_url
        self.anonymous = anonymous
        self._accept_legacy = accept_legacy_tokens
        self._resource_metadata = resource_metadata

    def authorize_publish(self, token: PresentedToken | None, topics: tuple[str, ...]) -> MercureGrant:
        """The publisher's grant when it may publish to every topic; raises 401 or 403."""
        if token is None:
            raise self._missing("publishing needs a token (Authorization: Bearer)")
        grant = self.verify(token.value, self._publisher_key)
        if grant.publish.is_empty:
            raise MercureForbidden("the token grants no publish rights")
        if not grant.may_publish(topics):
            raise MercureForbidden("the token does not allow publishing to every topic of the update")
        return grant

    def authorize_subscriber(self, token: PresentedToken | None) -> MercureGrant | None:
        """The subscriber's grant, or None for an anonymous subscriber; raises 401."""
        if token is None:
            if self.anonymous:
                return None
            raise self._missing("subscribing needs a token")
        return self.verify(token.value, self._subscriber_key)

    def verify(self, token: str, key: JwtKey) -> MercureGrant:
        """Verify ``token`` with ``key`` and read its grant; raises 401 invalid_token."""
        if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise self._invalid("not a JWS compact token")
        try:
            header = jwt.get_unverified_header(token)
            if _is_access_token(header):
                claims = self._decode_access_token(token, key)
                return access_token_grant(claims, self._base_url, _expiry(claims, required=True))
            if not self._accept_legacy:
                raise self._invalid("not an RFC 9068 access token (typ must be at+jwt)")
            claims = self._decode_legacy_token(token, key)
            return legacy_grant(claims, self._base_url, _expiry(claims, required=False))
        except (jwt.PyJWTError, InvalidClaims, ExpiredToken) as exc:
            raise self._invalid(str(exc)) from exc

    @staticmethod
    def _decode_legacy_token(token: str, key: JwtKey) -> dict[str, object]:
        # draft-07 defines no audience: an ``aud`` the token carries is not checked.
        options: jwt.types.Options = {"verify_aud": False}
        return jwt.decode(token, key.key, algorithms=list(key.algorithms), leeway=JWT_LEEWAY_SECONDS, options=options)

    def _decode_access_token(self, token: str, key: JwtKey) -> dict[str, object]:
        return jwt.decode(
            token,
            key.key,
            algorithms=list(key.algorithms),
            audience=self._policy.audiences,
            issuer=self._policy.issuers or None,
            leeway=JWT_LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud"]},
        )

    def _missing(self, message: str) -> MercureUnauthorized:
        return MercureUnauthorized(message, error=None, resource_metadata=self._resource_metadata)

    def _invalid(self, reason: str) -> MercureUnauthorized:
        logger.info("mercure token refused reason=%r", reason)
        return MercureUnauthorized("the token is not valid", resource_metadata=self._resource_metadata)


class ExpiredToken(ValueError):
    """The token's ``exp`` has passed (without the leeway PyJWT allows)."""


def _is_access_token(header: Mapping[str, object]) -> bool:
    typ = header.get("typ")
    return isinstance(typ, str) and typ.lower() in ACCESS_TOKEN_TYPES


def _expiry(claims: Mapping[str, object], *, required: bool) -> float | None:
    """When a stream opened with this token must end; PyJWT has already checked that
    ``exp`` reads as an integer. Raises ExpiredToken once it has passed."""
    exp = claims.get("exp")
    if not isinstance(exp, int | float | str):
        if required:
            raise ExpiredToken("the token has no exp")
        return None
    expires_at = token_expiry(exp)
    if expires_at is None:
        raise ExpiredToken("the token has expired")
    return expires_at
