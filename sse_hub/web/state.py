"""Typed keys for the state kept on the ``web.Application``.

Invariant: the app's state lives under these keys only, set once by ``create_app`` (no
module-level singletons); handlers read it, they never replace it.
"""

from __future__ import annotations

from aiohttp import web

from sse_hub.config.settings import Settings
from sse_hub.core.hub import Hub
from sse_hub.messages.contract import TicketStore
from sse_hub.web.auth import Authenticator
from sse_hub.web.client_address import ClientAddress
from sse_hub.web.connections import Connections
from sse_hub.web.cors import Cors
from sse_hub.web.dashboard_frame import DashboardFeed
from sse_hub.web.metrics import Metrics
from sse_hub.web.slots import Slots

SETTINGS = web.AppKey("settings", Settings)
HUB = web.AppKey("hub", Hub)
TICKETS = web.AppKey("tickets", TicketStore)
CLIENT_ADDRESS = web.AppKey("client_address", ClientAddress)
CORS = web.AppKey("cors", Cors)
AUTH = web.AppKey("auth", Authenticator)
METRICS = web.AppKey("metrics", Metrics)
CONNECTIONS = web.AppKey("connections", Connections)
PUBLISH_STREAMS = web.AppKey("publish_streams", Slots)
DASHBOARD_STREAMS = web.AppKey("dashboard_streams", Slots)
DASHBOARD_FEED = web.AppKey("dashboard_feed", DashboardFeed)
