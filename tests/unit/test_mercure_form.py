"""The Mercure publish form (``application/x-www-form-urlencoded``) -> UpdateForm: fields,
``private`` by presence, validation with messages that name the field, the reserved hub
namespace, and the limits. Pure: no server.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from sse_hub.errors import BadRequest, PayloadTooLarge
from sse_hub.mercure.publish_form import (
    MAX_FORM_FIELDS,
    MAX_RETRY_MS,
    MAX_TOPICS,
    UpdateForm,
    is_reserved_topic,
    parse_publish_form,
)
from sse_hub.messages import sse
from sse_hub.messages.mercure import MAX_SELECTOR_CHARS

HUB = "https://localhost/.well-known/mercure"


def form(*pairs: tuple[str, str]) -> bytes:
    return urlencode(pairs).encode()


def parse(*pairs: tuple[str, str]) -> UpdateForm:
    return parse_publish_form(form(*pairs), HUB)


def refused(body: bytes, match: str, error: type[Exception] = BadRequest) -> None:
    with pytest.raises(error, match=match):
        parse_publish_form(body, HUB)


def test_the_conformance_suite_body() -> None:
    """What mercure.spec.ts POSTs (URLSearchParams): the data keeps its blank line."""
    data = "data for\n\n        private URI template"
    body = form(
        ("topic", "https://example.net/foo/abc"),
        ("topic", "https://example.net/foo/def"),
        ("id", 'id-["https://example.net/foo/abc"]'),
        ("data", data),
        ("private", "on"),
    )
    update = parse_publish_form(body, HUB)
    assert update == UpdateForm(
        topics=("https://example.net/foo/abc", "https://example.net/foo/def"),
        data=data,
        private=True,
        event_id='id-["https://example.net/foo/abc"]',
    )
    assert update.topic == "https://example.net/foo/abc"


def test_the_conformance_update_encodes_as_the_suite_expects() -> None:
    """The suite matches ``lastEventId`` and ``data`` byte for byte; the blank line inside
    the data must be an empty ``data:`` line, not the end of the event."""
    body = form(("topic", "t"), ("id", 'id-["t"]'), ("data", "data for\n\n        raw string"))
    update = parse_publish_form(body, HUB)
    frame = sse.encode_event(update.data, update.event_type or "message", update.meta().sse_id(7), update.retry_ms)
    assert frame == b'id: id-["t"]\ndata: data for\ndata: \ndata:         raw string\n\n'
    hub_assigned = parse_publish_form(b"topic=t&data=x", HUB).meta().sse_id(7)
    assert sse.encode_event("x", "message", hub_assigned) == b"id: #7\ndata: x\n\n"


def test_a_minimal_update_has_defaults() -> None:
    assert parse(("topic", "a")) == UpdateForm(topics=("a",))


@pytest.mark.parametrize(
    "body", [b"topic=a&private", b"topic=a&private=", b"topic=a&private=off", b"private=0&topic=a"]
)
def test_private_is_set_by_presence_whatever_its_value(body: bytes) -> None:
    assert parse_publish_form(body, HUB).private


def test_form_decoding_plus_percent_and_utf8() -> None:
    update = parse_publish_form(b"topic=caf%C3%A9&data=a+b%0D%0Ac%00d&type=x+y", HUB)
    assert update.topics == ("caf\u00e9",)
    assert update.data == "a b\r\nc\x00d"
    assert update.event_type == "x y"
    assert parse_publish_form("topic=caf\u00e9".encode(), HUB).topics == ("caf\u00e9",)


def test_unknown_fields_are_ignored() -> None:
    assert parse(("topic", "a"), ("unknown", "x"), ("", "y")) == UpdateForm(topics=("a",))


def test_empty_id_and_type_mean_absent() -> None:
    assert parse(("topic", "a"), ("id", ""), ("type", ""), ("retry", "")) == UpdateForm(topics=("a",))


def test_valid_optional_fields() -> None:
    update = parse(("topic", "a"), ("id", "urn:uuid:1"), ("type", "update"), ("retry", "5000"))
    assert (update.event_id, update.event_type, update.retry_ms) == ("urn:uuid:1", "update", 5000)
    assert parse(("topic", "a"), ("retry", str(MAX_RETRY_MS))).retry_ms == MAX_RETRY_MS
    assert parse(("topic", "a"), ("retry", "0")).retry_ms == 0


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ((("data", "x"),), "missing 'topic'"),
        ((("topic", ""),), "must not be empty"),
        ((("topic", "*"),), "wildcard"),
        ((("topic", "a\nb"),), "control characters"),
        ((("topic", "a\x85"),), "control characters"),
        ((("topic", "a" * (MAX_SELECTOR_CHARS + 1)),), "at most"),
        ((("topic", "a"), ("id", "a\rb")), "id must not contain CR, LF or NUL"),
        ((("topic", "a"), ("id", "a\nb")), "id must not contain"),
        ((("topic", "a"), ("id", "a\x00b")), "id must not contain"),
        ((("topic", "a"), ("id", "#42")), "must not start with '#'"),
        ((("topic", "a"), ("id", "earliest")), "earliest"),
        ((("topic", "a"), ("id", "x" * 1025)), "at most 1024"),
        ((("topic", "a"), ("type", "a\nb")), "type must not contain"),
        ((("topic", "a"), ("type", "a\x00")), "type must not contain"),
        ((("topic", "a"), ("type", "mercure")), "reserved"),
        ((("topic", "a"), ("type", "t" * 129)), "at most 128"),
        ((("topic", "a"), ("retry", "-1")), "ASCII digits"),
        ((("topic", "a"), ("retry", "1.5")), "ASCII digits"),
        ((("topic", "a"), ("retry", " 5")), "ASCII digits"),
        ((("topic", "a"), ("retry", "\uff15")), "ASCII digits"),  # a fullwidth digit
        ((("topic", "a"), ("retry", str(MAX_RETRY_MS + 1))), "at most"),
        ((("topic", "a"), ("retry", "9" * 400)), "at most"),
        ((("topic", "a"), ("data", "1"), ("data", "2")), "'data' may appear only once"),
        ((("topic", "a"), ("id", "1"), ("id", "2")), "'id' may appear only once"),
    ],
)
def test_invalid_fields_are_400_with_a_message(pairs: tuple[tuple[str, str], ...], message: str) -> None:
    refused(form(*pairs), message)


def test_bodies_that_are_not_utf8_are_400() -> None:
    refused(b"topic=%FF", "not UTF-8")
    refused(b"topic=\xff", "not UTF-8")


def test_limits_are_413() -> None:
    refused(form(*[("topic", f"t{i}") for i in range(MAX_TOPICS + 1)]), "topics", PayloadTooLarge)
    refused(form(("topic", "a"), *[("x", "1")] * MAX_FORM_FIELDS), "fields", PayloadTooLarge)
    assert len(parse(*[("topic", f"t{i}") for i in range(MAX_TOPICS)]).topics) == MAX_TOPICS


RESERVED = [
    "/.well-known/mercure",
    "/.well-known/mercure/",
    "/.well-known/mercure/subscriptions/a/b",
    "https://other.example/.well-known/mercure/subscriptions/x",
    "http://localhost/.well-known/mercure",
    "custom-scheme://host/.well-known/mercure/x",
    "https://localhost/a/../.well-known/mercure/x",
    "https://localhost/./.well-known/./mercure",
    "https://localhost/%2Ewell-known/mercure",
    "https://localhost/.well-known/m%65rcure/x",
    "https://localhost/foo/%2e%2E/.well-known/mercure",
    "mercure/subscriptions/x",  # relative: resolved against the hub URL
    "../.well-known/mercure",
]
NOT_RESERVED = [
    "/.well-known/mercurex",
    "/.WELL-KNOWN/mercure",
    "https://localhost/.well-known/mercure%2Fx",
    "subscriptions/x",
    "urn:uuid:5b4b6c5e-0000-4000-8000-000000000000",
    "https://example.com/books/1",
    "http://[::1",
    "foo",
]


@pytest.mark.parametrize("topic", RESERVED)
def test_topics_in_the_hub_namespace_are_refused(topic: str) -> None:
    assert is_reserved_topic(topic, HUB)
    refused(form(("topic", "ok"), ("topic", topic)), "reserved for the hub")


@pytest.mark.parametrize("topic", NOT_RESERVED)
def test_other_topics_are_not_in_the_hub_namespace(topic: str) -> None:
    assert not is_reserved_topic(topic, HUB)
    assert parse(("topic", topic)).topics == (topic,)


def test_the_namespace_follows_the_hub_path() -> None:
    assert is_reserved_topic("/hub/x", "https://h.example/hub", "/hub")
    assert not is_reserved_topic("/.well-known/mercure", "https://h.example/hub", "/hub")
    assert parse_publish_form(b"topic=/.well-known/mercure", "https://h.example/hub").topics == (
        "/.well-known/mercure",
    )
