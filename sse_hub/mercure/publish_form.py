"""The Mercure publish request: an ``application/x-www-form-urlencoded`` body -> an UpdateForm.

Fields (draft-07 and 1.0, section "Publication"):

- ``topic``: one or more (repeatable); the first is the canonical topic, the others are
  alternates; an update reaches a subscriber matching any. Each is UTF-8 without C0/C1
  controls or DEL, at most ``MAX_SELECTOR_CHARS``; ``*`` is refused (it is the wildcard,
  no selector could pick that one topic out), and so is a topic that addresses the hub's
  own namespace (path ``/.well-known/mercure`` or below once resolved against the hub URL,
  after percent-decoding unreserved characters and removing dot segments): those are
  reserved for the hub's subscription events and must not be forgeable.
- ``data``: the payload (default empty); the SSE encoder splits it into ``data:`` lines.
- ``private``: present -> private, whatever its value, even empty or without ``=``.
- ``id``: see ``sse_hub.messages.mercure.check_publisher_id``; empty means absent.
- ``type``: the SSE ``event``; no CR, LF or NUL; ``mercure`` is reserved (1.0 sends its
  subscription events under it); empty means absent.
- ``retry``: ASCII digits only, at most ``MAX_RETRY_MS``.
- Unknown fields are ignored (1.0 says MUST). ``data``, ``id``, ``type`` and ``retry``
  appear at most once: two values would force a silent choice.

Errors: 400 ``BadRequest`` with a message naming the field; 413 ``PayloadTooLarge`` for
too many fields or topics. The body size itself is bounded by the HTTP layer
(``limits.max_message_bytes``) before this parser runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urljoin, urlsplit

from sse_hub.errors import BadRequest, PayloadTooLarge
from sse_hub.mercure.protocol import HUB_PATH
from sse_hub.mercure.selectors import WILDCARD
from sse_hub.messages.mercure import (
    MAX_TOPICS,
    InvalidEventId,
    InvalidSelector,
    MercureMeta,
    check_publisher_id,
    check_selector_value,
)
from sse_hub.messages.sse import FieldError, check_field

MAX_FORM_FIELDS = 1000
MAX_RETRY_MS = 86_400_000  # the channels' bound (messages.message.MAX_RETRY_MS)
MAX_TYPE_CHARS = 128
RESERVED_TYPE = "mercure"
_SINGLE_FIELDS = ("data", "id", "type", "retry")
_UNRESERVED_ESCAPE = re.compile(r"%(2[DdEe]|3[0-9]|4[1-9A-Fa-f]|5[0-9Aa]|5[Ff]|6[1-9A-Fa-f]|7[0-9Aa]|7[Ee])")


@dataclass(frozen=True, slots=True)
class UpdateForm:
    """A validated publish request, before the hub numbers it."""

    topics: tuple[str, ...]
    data: str = ""
    private: bool = False
    event_id: str | None = None
    event_type: str | None = None
    retry_ms: int | None = None

    @property
    def topic(self) -> str:
        """The canonical topic."""
        return self.topics[0]

    def meta(self) -> MercureMeta:
        return MercureMeta(self.topics, self.private, self.event_id)


def parse_publish_form(body: bytes, hub_url: str = f"https://localhost{HUB_PATH}") -> UpdateForm:
    """Parse and validate a publish body; ``hub_url`` resolves relative topics."""
    fields = _fields(body)
    topics = tuple(value for name, value in fields if name == "topic")
    if not topics:
        raise BadRequest("missing 'topic': an update needs at least one topic")
    if len(topics) > MAX_TOPICS:
        raise PayloadTooLarge(f"an update may have at most {MAX_TOPICS} topics")
    reserved_path = urlsplit(hub_url).path or HUB_PATH
    for topic in topics:
        _check_topic(topic, hub_url, reserved_path)
    single = _single_values(fields)
    return UpdateForm(
        topics=topics,
        data=single.get("data", ""),
        private=any(name == "private" for name, _ in fields),
        event_id=_event_id(single.get("id") or None),
        event_type=_event_type(single.get("type") or None),
        retry_ms=_retry(single.get("retry")),
    )


def _fields(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode("utf-8")
        return parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError as exc:
        raise BadRequest("the form is not UTF-8 (raw or percent-encoded)") from exc
    except ValueError as exc:  # "Max number of fields exceeded"
        raise PayloadTooLarge(f"the form may have at most {MAX_FORM_FIELDS} fields") from exc


def _single_values(fields: list[tuple[str, str]]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in fields:
        if name in _SINGLE_FIELDS:
            if name in values:
                raise BadRequest(f"'{name}' may appear only once")
            values[name] = value
    return values


def _check_topic(topic: str, hub_url: str, reserved_path: str) -> None:
    try:
        check_selector_value(topic, "topic")
    except InvalidSelector as exc:
        raise BadRequest(str(exc)) from exc
    if topic == WILDCARD:
        raise BadRequest("'*' is the wildcard selector, not a topic")
    if is_reserved_topic(topic, hub_url, reserved_path):
        raise BadRequest(f"topics under {reserved_path} are reserved for the hub")


def is_reserved_topic(topic: str, hub_url: str, reserved_path: str = HUB_PATH) -> bool:
    """Whether ``topic``, resolved against ``hub_url``, addresses the hub's namespace,
    whatever its scheme or authority (1.0, "Publication")."""
    try:
        path = urlsplit(urljoin(hub_url, topic)).path
    except ValueError:  # e.g. an invalid IPv6 literal: not a URL, so not in the namespace
        return False
    path = _remove_dot_segments(_UNRESERVED_ESCAPE.sub(lambda found: unquote(found.group(0)), path))
    return path == reserved_path or path.startswith(reserved_path.rstrip("/") + "/")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986, section 5.2.4 (``urljoin`` skips it for absolute references)."""
    output: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    return "/".join(output)


def _event_id(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        check_publisher_id(value)
    except InvalidEventId as exc:
        raise BadRequest(str(exc)) from exc
    return value


def _event_type(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        check_field("type", value)
    except FieldError as exc:
        raise BadRequest(str(exc)) from exc
    if len(value) > MAX_TYPE_CHARS:
        raise BadRequest(f"type may have at most {MAX_TYPE_CHARS} characters")
    if value == RESERVED_TYPE:
        raise BadRequest("type 'mercure' is reserved for the hub's own events")
    return value


def _retry(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit()):
        raise BadRequest("retry must be a number of milliseconds (ASCII digits only)")
    if len(value) > 9 or int(value) > MAX_RETRY_MS:
        raise BadRequest(f"retry may be at most {MAX_RETRY_MS} ms")
    return int(value)
