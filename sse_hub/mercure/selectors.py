"""Topic selectors: which topics a subscription, or a token's grant, selects.

A selector has a match type:

- ``TOPIC`` (draft-07 ``topic=`` and the ``mercure.publish`` / ``mercure.subscribe``
  claims): ``*`` matches every topic; otherwise the selector matches the topic equal to it,
  and, when it is a valid RFC 6570 URI template, every expansion of the template.
- ``EXACT`` (1.0 ``match=`` / ``match_exact=``): ``*`` or byte-for-byte equality, no
  normalisation.
- ``URLPATTERN`` (1.0 ``match_urlpattern=``): ``*`` or a WHATWG URL Pattern, relative
  patterns and topics resolved against the hub's URL, ``ignoreCase`` never enabled.

Invariants:

- Every matcher runs in time linear in the topic: URI templates are compiled by
  ``sse_hub.mercure.uritemplate`` and run on RE2 (``google-re2``); URL Patterns run on the
  ``urlpattern`` package, whose engine is Rust's ``regex`` crate (also linear-time).
  Python's backtracking ``re`` never sees a selector.
- Compiled matchers are cached in bounded LRU caches; a failed compilation is not cached
  (it raises, and costs one parse bounded by ``MAX_SELECTOR_CHARS``).
- A ``SelectorSet`` answers "does any of these selectors match any of these topics" with
  set lookups for exact selectors and ``*``; only pattern selectors are tried one by one.
- A matcher that fails at match time (a topic the URL parser refuses) does not match.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable
from dataclasses import dataclass

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information
from urlpattern import URLPattern

from sse_hub.mercure.uritemplate import TemplateTooComplex, template_regex
from sse_hub.messages.mercure import InvalidSelector, check_selector_value

WILDCARD = "*"
TEMPLATE_CACHE_SIZE = 4096
URLPATTERN_CACHE_SIZE = 1024
# RE2's compiled program for one template may not use more than this (the template limits
# keep honest templates far below it).
RE2_MAX_MEM_BYTES = 8 << 20


class MatchType(enum.Enum):
    TOPIC = "topic"
    EXACT = "exact"
    URLPATTERN = "urlpattern"


@dataclass(frozen=True, slots=True)
class Selector:
    match_type: MatchType
    value: str


class _TemplateMatcher:
    __slots__ = ("_regex", "source")

    def __init__(self, source: str, regex: str) -> None:
        options = re2.Options()
        options.never_capture = True
        options.log_errors = False
        options.max_mem = RE2_MAX_MEM_BYTES
        try:
            self._regex = re2.compile(regex, options)
        except re2.error as exc:  # over max_mem
            raise InvalidSelector("the URI template is too complex to match") from exc
        self.source = source

    def matches(self, topic: str) -> bool:
        return self._regex.fullmatch(topic) is not None


class _UrlPatternMatcher:
    __slots__ = ("_base_url", "_pattern", "source")

    def __init__(self, source: str, base_url: str) -> None:
        try:
            self._pattern = URLPattern(source, base_url)
        except (ValueError, TypeError) as exc:
            raise InvalidSelector(f"not a valid URL pattern: {exc}") from exc
        self._base_url = base_url
        self.source = source

    def matches(self, topic: str) -> bool:
        try:
            return self._pattern.test(topic, self._base_url)
        except (ValueError, TypeError):
            return False


_Matcher = _TemplateMatcher | _UrlPatternMatcher


@functools.lru_cache(maxsize=TEMPLATE_CACHE_SIZE)
def _template_matcher(template: str) -> _TemplateMatcher | None:
    try:
        regex = template_regex(template)
    except TemplateTooComplex as exc:
        raise InvalidSelector(str(exc)) from exc
    return None if regex is None else _TemplateMatcher(template, regex)


@functools.lru_cache(maxsize=URLPATTERN_CACHE_SIZE)
def _urlpattern_matcher(pattern: str, base_url: str) -> _UrlPatternMatcher:
    return _UrlPatternMatcher(pattern, base_url)


class SelectorSet:
    """A compiled list of selectors: matches a topic when any selector does."""

    __slots__ = ("_exact", "_patterns", "match_all")

    def __init__(self, exact: frozenset[str], patterns: tuple[_Matcher, ...], match_all: bool) -> None:
        self._exact = exact
        self._patterns = patterns
        self.match_all = match_all

    @property
    def is_empty(self) -> bool:
        return not (self.match_all or self._exact or self._patterns)

    @property
    def exact_topics(self) -> frozenset[str]:
        """Topics selected by equality (``*`` and patterns excluded): what routing by
        interest can index."""
        return self._exact

    @property
    def has_patterns(self) -> bool:
        """Whether a topic must be tested against patterns (``*`` or a template/pattern)."""
        return self.match_all or bool(self._patterns)

    def matches(self, topic: str) -> bool:
        if self.match_all or topic in self._exact:
            return True
        return any(matcher.matches(topic) for matcher in self._patterns)

    def matches_any(self, topics: Iterable[str]) -> bool:
        return any(self.matches(topic) for topic in topics)


EMPTY = SelectorSet(frozenset(), (), match_all=False)


def compile_selectors(selectors: Iterable[Selector], base_url: str) -> SelectorSet:
    """Compile selectors (each checked with ``check_selector_value``); ``base_url`` is the
    hub's URL, against which relative URL patterns and topics are resolved."""
    exact: set[str] = set()
    patterns: dict[tuple[MatchType, str], _Matcher] = {}
    match_all = False
    for selector in selectors:
        check_selector_value(selector.value)
        if selector.value == WILDCARD:
            match_all = True
            continue
        if selector.match_type is MatchType.URLPATTERN:
            patterns[(selector.match_type, selector.value)] = _urlpattern_matcher(selector.value, base_url)
            continue
        exact.add(selector.value)
        if selector.match_type is MatchType.TOPIC:
            template = _template_matcher(selector.value)
            if template is not None:
                patterns[(selector.match_type, selector.value)] = template
    return SelectorSet(frozenset(exact), tuple(patterns.values()), match_all)


def should_deliver(topics: Iterable[str], private: bool, subscription: SelectorSet, grant: SelectorSet) -> bool:
    """Whether an update reaches a subscriber: one of its topics (canonical or alternate) is
    selected by the subscription and, for a private update, one of them is selected by the
    subscriber's grant (the ``subscribe`` selectors of its token; ``EMPTY`` if anonymous)."""
    topics = tuple(topics)
    if not subscription.matches_any(topics):
        return False
    return not private or grant.matches_any(topics)


def cache_info() -> dict[str, int]:
    """Sizes of the compiled-matcher caches (for metrics and tests)."""
    templates = _template_matcher.cache_info()
    urlpatterns = _urlpattern_matcher.cache_info()
    return {"templates": templates.currsize, "urlpatterns": urlpatterns.currsize}
