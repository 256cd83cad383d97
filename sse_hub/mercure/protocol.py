"""The two Mercure wire protocols sse-hub speaks on one endpoint, and their names.

- ``DRAFT_07``: the pre-standardization protocol (draft-dunglas-mercure-07, hub 0.x up to
  v0.24.2, what symfony/mercure 0.7 sends): ``topic=`` selectors (exact, ``*`` or RFC 6570
  URI templates), the ``mercure`` JWT claim, ``lastEventID``, the ``Last-Event-ID``
  response header, the ``mercureAuthorization`` cookie and the ``authorization`` query
  parameter.
- ``V1``: protocol 1.0 (draft-dunglas-mercure-08): ``match=`` / ``match_exact=`` /
  ``match_urlpattern=`` selectors, RFC 9068 access tokens (``typ: at+jwt``) with
  ``authorization_details``, ``last_event_id``, the ``Mercure-Last-Event-ID`` response
  header and the ``__Secure-mercure_access_token`` cookie.

A subscribe request's protocol is told by its selector parameters (``topic`` versus
``match*``; both in one request is a 400). A publish request has no such parameter: a
token's profile is told by its ``typ`` header (``at+jwt``), and the form is the same in both.
"""

from __future__ import annotations

import enum

HUB_PATH = "/.well-known/mercure"

LEGACY_COOKIE = "mercureAuthorization"
COOKIE = "__Secure-mercure_access_token"
LEGACY_TOKEN_PARAM = "authorization"

LEGACY_TOPIC_PARAM = "topic"
LEGACY_CURSOR_PARAM = "lastEventID"
CURSOR_PARAM = "last_event_id"


class Protocol(enum.Enum):
    DRAFT_07 = "draft-07"
    V1 = "1.0"

    @property
    def cursor_response_header(self) -> str:
        """The response header that tells a resuming subscriber where its replay starts."""
        return "Last-Event-ID" if self is Protocol.DRAFT_07 else "Mercure-Last-Event-ID"
