"""The Mercure subscribe request: query parameters and headers -> a SubscribeRequest.

Protocol detection (``sse_hub.mercure.protocol``): ``topic`` parameters make a draft-07
request; ``match``, ``match_exact`` or ``match_urlpattern`` (also spelled ``matchExact``
and ``matchURLPattern`` in the latest drafts) make a 1.0 request. Both kinds in one request,
or neither, is a 400. In a 1.0 request any other parameter whose name starts with
``match`` (ASCII case-insensitive) is a 400, so a misspelled matcher fails loudly.

The cursor: the ``Last-Event-ID`` header wins over the query (both specs); the query
parameter is ``lastEventID`` (draft-07) or ``last_event_id`` (1.0), either accepted on
either protocol (the request's own name first). An empty value is no cursor.

The token in the query (``authorization``) is honoured for draft-07 requests only: 1.0
keeps tokens out of URLs, where they end up in logs.

Limits: at most ``MAX_SELECTORS`` selectors, of which ``MAX_PATTERN_SELECTORS`` may be
templates or URL patterns (each costs a match per update); every value is checked by
``check_selector_value``; a template over the complexity limits is a 400, not a silent
exact match. Duplicate selectors are merged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sse_hub.errors import BadRequest
from sse_hub.mercure.ids import Cursor, parse_cursor
from sse_hub.mercure.protocol import (
    CURSOR_PARAM,
    LEGACY_CURSOR_PARAM,
    LEGACY_TOKEN_PARAM,
    LEGACY_TOPIC_PARAM,
    Protocol,
)
from sse_hub.mercure.selectors import MatchType, Selector, SelectorSet, compile_selectors
from sse_hub.messages.mercure import InvalidSelector

MAX_SELECTORS = 1000
MAX_PATTERN_SELECTORS = 100
MATCH_PARAMS = {
    "match": MatchType.EXACT,
    "match_exact": MatchType.EXACT,
    "matchExact": MatchType.EXACT,
    "match_urlpattern": MatchType.URLPATTERN,
    "matchURLPattern": MatchType.URLPATTERN,
}


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    protocol: Protocol
    selectors: tuple[Selector, ...]
    subscription: SelectorSet
    cursor: Cursor | None
    query_token: str | None

    @property
    def cursor_response_header(self) -> str:
        return self.protocol.cursor_response_header


def parse_subscribe_query(
    query: Iterable[tuple[str, str]], last_event_id: str | None, hub_url: str
) -> SubscribeRequest:
    """``query``: the query's (name, value) pairs in order; ``last_event_id``: the header."""
    pairs = list(query)
    protocol = _protocol(pairs)
    selectors = tuple(dict.fromkeys(_selectors(pairs, protocol)))
    _check_counts(selectors)
    try:
        subscription = compile_selectors(selectors, hub_url)
    except InvalidSelector as exc:
        raise BadRequest(str(exc)) from exc
    query_token = _first(pairs, LEGACY_TOKEN_PARAM) if protocol is Protocol.DRAFT_07 else None
    return SubscribeRequest(protocol, selectors, subscription, _cursor(pairs, last_event_id, protocol), query_token)


def _protocol(pairs: list[tuple[str, str]]) -> Protocol:
    legacy = any(name == LEGACY_TOPIC_PARAM for name, _ in pairs)
    current = any(name.lower().startswith("match") for name, _ in pairs)
    if legacy and current:
        raise BadRequest("use either 'topic' (draft-07) or 'match' parameters (protocol 1.0), not both")
    if not legacy and not current:
        raise BadRequest("missing 'topic' (or 'match'): a subscription needs at least one selector")
    return Protocol.DRAFT_07 if legacy else Protocol.V1


def _selectors(pairs: list[tuple[str, str]], protocol: Protocol) -> list[Selector]:
    if protocol is Protocol.DRAFT_07:
        return [Selector(MatchType.TOPIC, value) for name, value in pairs if name == LEGACY_TOPIC_PARAM]
    selectors = []
    for name, value in pairs:
        if not name.lower().startswith("match"):
            continue
        match_type = MATCH_PARAMS.get(name)
        if match_type is None:
            raise BadRequest("unknown matcher parameter: use match, match_exact or match_urlpattern")
        selectors.append(Selector(match_type, value))
    return selectors


def _check_counts(selectors: tuple[Selector, ...]) -> None:
    if len(selectors) > MAX_SELECTORS:
        raise BadRequest(f"a subscription may have at most {MAX_SELECTORS} selectors")
    patterns = sum(1 for selector in selectors if _is_pattern(selector))
    if patterns > MAX_PATTERN_SELECTORS:
        raise BadRequest(f"a subscription may have at most {MAX_PATTERN_SELECTORS} URI templates or URL patterns")


def _is_pattern(selector: Selector) -> bool:
    if selector.match_type is MatchType.TOPIC:
        return "{" in selector.value
    return selector.match_type is MatchType.URLPATTERN


def _cursor(pairs: list[tuple[str, str]], header: str | None, protocol: Protocol) -> Cursor | None:
    names = (LEGACY_CURSOR_PARAM, CURSOR_PARAM)
    if protocol is Protocol.V1:
        names = (CURSOR_PARAM, LEGACY_CURSOR_PARAM)
    for value in (header, *(_first(pairs, name) for name in names)):
        if value:
            return parse_cursor(value)
    return None


def _first(pairs: list[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in pairs if key == name), None)
