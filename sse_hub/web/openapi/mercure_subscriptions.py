"""The operations of Mercure's subscriptions API as ``/openapi.json`` describes them
(``web/routes/mercure_subscriptions.py`` pairs them with its routes).

Each answers in the form of the token's protocol (docs/mercure.md, "Subscriptions"): a
draft-07 token gets ``application/ld+json`` with ``lastEventID`` in the body, a 1.0
access token ``application/json`` with the cursor in a ``Link`` header. An operation has
one media type here: the draft-07 one, the 1.0 one is in its description and schema.
"""

from __future__ import annotations

from sse_hub.web.openapi.spec import JsonObject, Operation

MAX_PAGE = 1000  # the roster's (broker/redis/roster.py): one script call per answer
LD_JSON = "application/ld+json"
TEXT: JsonObject = {"type": "string"}
COMMON: dict[str, JsonObject] = {"id": TEXT, "subscriber": TEXT, "active": {"type": "boolean"}, "payload": {}}
DRAFT07_SUBSCRIPTION: JsonObject = {
    "type": "object",
    "properties": {**COMMON, "@context": TEXT, "type": {"const": "Subscription"}, "topic": TEXT, "lastEventID": TEXT},
    "required": ["id", "type", "topic", "subscriber", "active"],
}
V1_SUBSCRIPTION: JsonObject = {
    "type": "object",
    "properties": {
        **COMMON,
        "type": {"const": "subscription"},
        "match_type": {"enum": ["exact", "urlpattern", "topic"]},
        "match": TEXT,
    },
    "required": ["id", "type", "match_type", "match", "subscriber", "active"],
}
SUBSCRIPTION: JsonObject = {"oneOf": [DRAFT07_SUBSCRIPTION, V1_SUBSCRIPTION]}
SUBSCRIPTIONS: JsonObject = {
    "type": "object",
    "properties": {
        "@context": TEXT,
        "id": TEXT,
        "type": {"const": "Subscriptions"},
        "lastEventID": TEXT,
        "subscriptions": {"type": "array", "items": SUBSCRIPTION},
        "next": TEXT,
    },
    "required": ["id", "type", "subscriptions"],
}
PAGE_PARAMETERS: tuple[JsonObject, ...] = (
    {"name": "limit", "in": "query", "description": f"Subscribers read, 1 to {MAX_PAGE}.", "schema": TEXT},
    {"name": "after", "in": "query", "description": "The cursor of `next`.", "schema": TEXT},
)


def _path(name: str, description: str) -> JsonObject:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": TEXT}


FIRST = _path("first", "draft-07 token: the selector; 1.0 token: the match type (`exact`, `urlpattern`, `topic`).")
SECOND = _path("second", "draft-07 token: the subscriber; 1.0 token: the selector.")
SUBSCRIBER = _path("subscriber", "1.0 token only: the subscriber.")
ERRORS = {
    400: "Bad `limit`.",
    401: "No token, or the token is not valid.",
    403: "The token's subscribe selectors do not match this resource.",
}
FORMS = (
    " Answers in the token's form: draft-07 `application/ld+json` with `lastEventID`; 1.0"
    ' `application/json` with `Link: <hub>; rel="mercure"; last-event-id="..."` (docs/mercure.md#subscriptions).'
)


def _operation(summary: str, answer: JsonObject, parameters: tuple[JsonObject, ...], **more: str) -> Operation:
    errors = {**ERRORS, **{int(status[1:]): text for status, text in more.items()}}
    return Operation(
        "subscribe", summary, answer, media=LD_JSON, parameters=parameters, errors=errors, description=summary + FORMS
    )


LIST = _operation("Mercure: active subscriptions", SUBSCRIPTIONS, PAGE_PARAMETERS)
LIST_TOPIC = _operation(
    "Mercure: active subscriptions to a selector (draft-07 token; 404 with a 1.0 token)",
    SUBSCRIPTIONS,
    (FIRST, *PAGE_PARAMETERS),
    s404="Not a resource of the token's form.",
)
TWO = _operation(
    "Mercure: one active subscription (draft-07 token), or those of one selector (1.0 token)",
    {"oneOf": [DRAFT07_SUBSCRIPTION, SUBSCRIPTIONS]},
    (FIRST, SECOND, *PAGE_PARAMETERS),
    s404="Not active.",
)
ONE_V1 = _operation(
    "Mercure: one active subscription (1.0 token; 404 with a draft-07 token)",
    V1_SUBSCRIPTION,
    (FIRST, SECOND, SUBSCRIBER),
    s404="Not active, or not a resource of the token's form.",
)
