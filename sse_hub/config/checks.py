"""Load-time checks of setting values that a type alone cannot express.

Each check asks the code that will use the value later, so that a value passing here is
one that code accepts, and a mistake stops start-up (exit 2, the key named) instead of
failing at the first request:

- ``server.trusted_proxies``: ``parse_networks``, what ``web.client_address`` runs;
- ``broker.redis_url``: redis-py's own URL parser, what ``Redis.from_url`` runs;
- JWT algorithms and keys: PyJWT's algorithm registry and each algorithm's
  ``prepare_key``, what ``jwt.decode`` runs for every token.

Invariant: a message never holds a secret. ``settings._describe`` adds the key's name; it
does not repeat values under ``auth``, ``mercure`` or ``broker.redis_url``.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Iterable
from pathlib import Path

import jwt
from jwt.algorithms import Algorithm, HMACAlgorithm, get_default_algorithms
from redis.asyncio.connection import parse_url

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Seconds of clock difference tolerated between a token's issuer and this host (both the
# subscriber JWTs and Mercure's).
JWT_LEEWAY_SECONDS = 5
# A stream's expiry timer is capped here: a later ``exp`` (10**400 is a valid JSON integer)
# changes nothing in practice but would overflow a float.
MAX_GRANT_SECONDS = 366 * 24 * 3600


def token_expiry(exp: int | float | str) -> float | None:
    """When a stream opened with a token must end: its ``exp`` (PyJWT has checked that it
    reads as an integer), at most ``MAX_GRANT_SECONDS`` from now; None once it has passed."""
    now = time.time()
    expires_at = min(int(exp), now + MAX_GRANT_SECONDS)
    return float(expires_at) if expires_at > now else None


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """IPs or CIDRs; raises ValueError naming the bad entry."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"not an IP address or CIDR: {entry!r}") from exc
    return tuple(networks)


def check_proxy_entry(entry: str) -> str:
    try:
        parse_networks([entry])
    except ValueError:
        raise ValueError("not an IP address or CIDR") from None
    return entry


def check_redis_url(url: str) -> str:
    try:
        parse_url(url)
    except ValueError as exc:
        # urllib quotes the text it took for a port ("... as 'x'"), which may be a password.
        reason = re.sub(r" as '.*'$", "", str(exc))
        raise ValueError(f"not a Redis URL redis-py can use: {reason}") from None
    return url


def read_public_key(path: str) -> str:
    """The PEM text, read as ``auth.Authenticator`` reads it."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a PEM file (not UTF-8 text)") from None


def check_jwt_keys(algorithms: list[str], secret: str | None, public_key_file: str | None) -> None:
    """Every algorithm is one PyJWT knows and can verify with the one key configured.

    An HMAC algorithm (HS*) needs ``secret``; the others need ``public_key_file``. HS*
    beside a public key would let anyone who holds that public key sign tokens."""
    known = _known_algorithms()
    for name in algorithms:
        if name == "none":
            raise ValueError("'none' would accept tokens with no signature")
        if name not in known:
            raise ValueError(f"{name!r} is not a JWT algorithm PyJWT supports; use one of {', '.join(sorted(known))}")
    if secret is None and public_key_file is None:
        return  # no key: subscribers are open and nothing is verified
    for name in algorithms:
        algorithm = known[name]
        if isinstance(algorithm, HMACAlgorithm):
            if secret is None:
                raise ValueError(
                    f"{name} verifies with a shared secret, but the key is public_key_file: anyone holding "
                    f"the public key could sign tokens; list only RS*, PS*, ES* or EdDSA algorithms"
                )
            _prepare(algorithm, name, secret, "secret")
        else:
            if public_key_file is None:
                raise ValueError(f"{name} verifies with a public key: set public_key_file (secret is for HS*)")
            _prepare(algorithm, name, read_public_key(public_key_file), f"public_key_file {public_key_file}")


def _known_algorithms() -> dict[str, Algorithm]:
    """PyJWT's registry, without ``none`` (a token with no signature is never a credential)."""
    return {name: algorithm for name, algorithm in get_default_algorithms().items() if name != "none"}


def _prepare(algorithm: Algorithm, name: str, key: str, what: str) -> None:
    try:
        algorithm.prepare_key(key)
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        # PyJWT's messages here are fixed texts ("HMAC key must not be empty."): no key material.
        raise ValueError(f"{name} cannot use {what}: {exc}") from None
