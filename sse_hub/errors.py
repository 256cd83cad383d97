"""The HubError hierarchy: every error a client can see, with its HTTP status and code.

One middleware (``sse_hub.web.middleware``) turns these into JSON bodies
``{"error": code, "detail": ...}``. 5xx details are logged, not sent.

    HubError
    ├── BadRequest              400 bad_request
    │   └── InvalidChannel      400 invalid_channel
    ├── Unauthorized            401 unauthorized
    ├── Forbidden               403 forbidden
    ├── NotFound                404 not_found
    │   └── UnknownClient       404 unknown_client
    ├── RequestTimeout          408 request_timeout
    ├── ChannelFinished         409 channel_finished
    ├── PayloadTooLarge         413 payload_too_large
    ├── UnsupportedMediaType    415 unsupported_media_type
    ├── TooManyConnectionsFromIp 429 too_many_connections_per_ip
    ├── HttpVersionNotSupported 505 http_version_not_supported
    └── Unavailable             503 unavailable  (with Retry-After)
        ├── TooManyConnections  503 too_many_connections
        ├── TooManyTickets      503 too_many_tickets
        ├── TooManyPublishStreams 503 too_many_publish_streams
        ├── TooManyDashboards   503 too_many_dashboards
        └── BrokerUnavailable   503 broker_unavailable
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

JsonDetail = str | Sequence[object] | Mapping[str, object] | None


class HubError(Exception):
    """Base class: an error with an HTTP status, a stable code and a detail for the body."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, detail: JsonDetail = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    @property
    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(HubError):
    status = 400
    code = "bad_request"


class InvalidChannel(BadRequest):
    code = "invalid_channel"


class Unauthorized(HubError):
    status = 401
    code = "unauthorized"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="sse-hub"'}


class Forbidden(HubError):
    status = 403
    code = "forbidden"


class NotFound(HubError):
    status = 404
    code = "not_found"


class UnknownClient(NotFound):
    code = "unknown_client"


class RequestTimeout(HubError):
    status = 408
    code = "request_timeout"


class ChannelFinished(HubError):
    """A publish to a channel whose final message was published (``"final": true``): the
    channel has ended until ``history.finished_ttl_seconds`` forget it."""

    status = 409
    code = "channel_finished"

    def __init__(self, channel: str) -> None:
        super().__init__(f"channel {channel!r} has ended (its final message was published)", {"channel": channel})
        self.channel = channel


class PayloadTooLarge(HubError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(HubError):
    status = 415
    code = "unsupported_media_type"


class TooManyConnectionsFromIp(HubError):
    status = 429
    code = "too_many_connections_per_ip"

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class HttpVersionNotSupported(HubError):
    status = 505
    code = "http_version_not_supported"


class Unavailable(HubError):
    status = 503
    code = "unavailable"
    retry_after_seconds: ClassVar[int] = 1

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class TooManyConnections(Unavailable):
    code = "too_many_connections"
    retry_after_seconds = 5


class TooManyTickets(Unavailable):
    """``limits.max_tickets`` one-time tickets are outstanding; some expire or are used soon."""

    code = "too_many_tickets"
    retry_after_seconds = 5


class TooManyPublishStreams(Unavailable):
    """``limits.max_publish_streams`` NDJSON publish streams are open already."""

    code = "too_many_publish_streams"
    retry_after_seconds = 5

    def __init__(self, limit: int) -> None:
        super().__init__(f"{limit} publish streams are open already", {"max_publish_streams": limit})


class TooManyDashboards(Unavailable):
    """As many dashboard streams as one instance serves are open already."""

    code = "too_many_dashboards"
    retry_after_seconds = 5

    def __init__(self, limit: int) -> None:
        super().__init__(f"{limit} dashboard streams are open already", {"max_dashboard_streams": limit})


class BrokerUnavailable(Unavailable):
    code = "broker_unavailable"
    retry_after_seconds = 2
