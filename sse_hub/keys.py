"""Typed keys for the state kept on the ``web.Application``.

Invariant: the app's state lives under these keys only, set once by ``create_app`` (no
module-level singletons); handlers read it, they never replace it.
"""

from __future__ import annotations

from aiohttp import web

from sse_hub.auth import Authenticator
from sse_hub.config import Settings
from sse_hub.connections import Connections
from sse_hub.cors import Cors
from sse_hub.hub import Hub
from sse_hub.metrics import Metrics
from sse_hub.net import ClientAddress

SETTINGS = web.AppKey("settings", Settings)
HUB = web.AppKey("hub", Hub)
CLIENT_ADDRESS = web.AppKey("client_address", ClientAddress)
CORS = web.AppKey("cors", Cors)
AUTH = web.AppKey("auth", Authenticator)
METRICS = web.AppKey("metrics", Metrics)
CONNECTIONS = web.AppKey("connections", Connections)
