"""Credentials the tests configure and present: ``bearer`` headers, the subscriber JWT
secret, and a ``Signer`` per algorithm for subscriber tokens (the ``signers`` fixture).

Secrets are 32 bytes or more: PyJWT warns about shorter HMAC keys, and warnings are errors.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PUBLISH = "publish-token-0123456789abcdef"
SECRET = "subscriber-secret-0123456789abcdef-0123456789"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Signer:
    """Signs subscriber tokens for one algorithm; ``config`` is the hub's ``subscriber_jwt``."""

    def __init__(self, algorithm: str, key: Any, config: dict[str, Any], public_pem: bytes = b"") -> None:
        self.algorithm = algorithm
        self.key = key
        self.config = config
        self.public_pem = public_pem

    def token(self, channels: object = ("*",), ttl: float | None = 60, **claims: Any) -> str:
        payload: dict[str, Any] = {"sub": "user-1", **claims}
        if channels is not None:
            payload["channels"] = list(channels) if isinstance(channels, tuple) else channels
        if ttl is not None:
            payload["exp"] = int(time.time() + ttl)
        return jwt.encode(payload, self.key, algorithm=self.algorithm)


def public_key_file(directory: Path, private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> Path:
    path = directory / f"{type(private_key).__name__}.pem"
    path.write_bytes(
        private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path
