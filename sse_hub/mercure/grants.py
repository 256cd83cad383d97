"""What a verified Mercure token grants: publish and subscribe selectors, read from its claims.

Two claim shapes, one per protocol (``sse_hub.mercure.protocol``):

- draft-07: ``{"mercure": {"publish": [selectors], "subscribe": [selectors], "payload": ...}}``;
  selectors are ``topic`` selectors (``*``, exact, URI templates). A token without the
  ``mercure`` claim grants nothing (it is still a valid token).
- 1.0 (RFC 9068 access token): ``authorization_details`` (RFC 9396), a list of objects;
  those of the Mercure type (``https://mercure.rocks/authorization-detail``, or ``mercure``
  as later drafts spell it) carry ``actions`` (``publish``, ``subscribe``; other values are
  ignored), ``topics`` (``[{"match": ..., "match_type": "exact" | "urlpattern"}]``,
  ``match_type`` defaulting to exact) and an optional ``payload``. Details of other types
  are ignored.

Invariant: no partial acceptance. A malformed claim, or a selector the hub would refuse
(``InvalidSelector``), or more than ``MAX_DETAILS`` details / ``MAX_GRANT_SELECTORS``
selectors, raises ``InvalidClaims`` and the whole token is refused (401 invalid_token):
dropping the bad part would silently change what the token means.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sse_hub.mercure.protocol import Protocol
from sse_hub.mercure.selectors import EMPTY, MatchType, Selector, SelectorSet, compile_selectors
from sse_hub.messages.mercure import InvalidSelector

MERCURE_DETAIL_TYPES = frozenset({"https://mercure.rocks/authorization-detail", "mercure"})
MAX_DETAILS = 100
MAX_GRANT_SELECTORS = 1000
_MATCH_TYPES = {
    "exact": MatchType.EXACT,
    "Exact": MatchType.EXACT,
    "urlpattern": MatchType.URLPATTERN,
    "URLPattern": MatchType.URLPATTERN,
}


class InvalidClaims(ValueError):
    """The token's Mercure claims cannot be read; the message says why (for logs)."""


@dataclass(frozen=True, slots=True)
class MercureGrant:
    """A verified token's rights. ``expires_at``: epoch seconds when a stream opened with it
    must end (None: no ``exp``). ``payload``: echoed in subscription events."""

    protocol: Protocol
    publish: SelectorSet
    subscribe: SelectorSet
    payload: object = None
    expires_at: float | None = None

    def may_publish(self, topics: tuple[str, ...]) -> bool:
        """Every topic, canonical and alternate, must be granted (draft-07 and 1.0 alike)."""
        return bool(topics) and all(self.publish.matches(topic) for topic in topics)


def legacy_grant(claims: Mapping[str, object], base_url: str, expires_at: float | None) -> MercureGrant:
    """Read the draft-07 ``mercure`` claim."""
    mercure = claims.get("mercure")
    if mercure is None:
        return MercureGrant(Protocol.DRAFT_07, EMPTY, EMPTY, None, expires_at)
    if not isinstance(mercure, dict):
        raise InvalidClaims("the 'mercure' claim must be an object")
    publish = _selector_list(mercure.get("publish"), "mercure.publish")
    subscribe = _selector_list(mercure.get("subscribe"), "mercure.subscribe")
    if len(publish) + len(subscribe) > MAX_GRANT_SELECTORS:
        raise InvalidClaims(f"the 'mercure' claim may hold at most {MAX_GRANT_SELECTORS} selectors")
    return MercureGrant(
        Protocol.DRAFT_07,
        _compile([Selector(MatchType.TOPIC, value) for value in publish], base_url),
        _compile([Selector(MatchType.TOPIC, value) for value in subscribe], base_url),
        mercure.get("payload"),
        expires_at,
    )


def _selector_list(value: object, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidClaims(f"'{name}' must be a list of strings")
    return list(value)


def access_token_grant(claims: Mapping[str, object], base_url: str, expires_at: float | None) -> MercureGrant:
    """Read the 1.0 ``authorization_details`` claim."""
    details = claims.get("authorization_details")
    if details is None:
        return MercureGrant(Protocol.V1, EMPTY, EMPTY, None, expires_at)
    if not isinstance(details, list) or not all(isinstance(detail, dict) for detail in details):
        raise InvalidClaims("'authorization_details' must be a list of objects")
    mercure_details = [detail for detail in details if detail.get("type") in MERCURE_DETAIL_TYPES]
    if len(mercure_details) > MAX_DETAILS:
        raise InvalidClaims(f"a token may carry at most {MAX_DETAILS} Mercure authorization details")
    publish: list[Selector] = []
    subscribe: list[Selector] = []
    payload: object = None
    for detail in mercure_details:
        actions, selectors = _read_detail(detail)
        if "publish" in actions:
            publish.extend(selectors)
        if "subscribe" in actions:
            if not subscribe and detail.get("payload") is not None:
                payload = detail["payload"]
            subscribe.extend(selectors)
        if len(publish) + len(subscribe) > MAX_GRANT_SELECTORS:
            raise InvalidClaims(f"a token may grant at most {MAX_GRANT_SELECTORS} selectors")
    return MercureGrant(Protocol.V1, _compile(publish, base_url), _compile(subscribe, base_url), payload, expires_at)


def _read_detail(detail: Mapping[str, object]) -> tuple[frozenset[str], list[Selector]]:
    actions = detail.get("actions")
    if not isinstance(actions, list) or not actions or not all(isinstance(action, str) for action in actions):
        raise InvalidClaims("a Mercure authorization detail needs 'actions', a non-empty list of strings")
    topics = detail.get("topics")
    if not isinstance(topics, list) or not topics or len(topics) > MAX_GRANT_SELECTORS:
        raise InvalidClaims("a Mercure authorization detail needs 'topics', a non-empty list of matchers")
    return frozenset(actions), [_read_matcher(topic) for topic in topics]


def _read_matcher(topic: object) -> Selector:
    if not isinstance(topic, dict) or not isinstance(topic.get("match"), str) or not topic["match"]:
        raise InvalidClaims("a topic matcher must be an object with a non-empty 'match' string")
    match_type = topic.get("match_type", topic.get("matchType", "exact"))
    if not isinstance(match_type, str) or match_type not in _MATCH_TYPES:
        raise InvalidClaims("a topic matcher's 'match_type' must be 'exact' or 'urlpattern'")
    return Selector(_MATCH_TYPES[match_type], topic["match"])


def _compile(selectors: list[Selector], base_url: str) -> SelectorSet:
    try:
        return compile_selectors(selectors, base_url)
    except InvalidSelector as exc:
        raise InvalidClaims(f"a granted selector is refused: {exc}") from exc
