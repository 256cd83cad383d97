"""The OpenAPI 3.1 description of the HTTP API, served at ``/openapi.json``."""

from __future__ import annotations

from sse_hub import __version__
from sse_hub.config import Settings


def build_openapi(settings: Settings) -> dict[str, object]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "sse-hub", "version": __version__},
        "paths": {},
    }
