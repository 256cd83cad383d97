"""Mercure ids: hub ids ``#<n>`` (``#<seq>.<epoch>`` on the sharded broker) and back,
publisher ids that can never pass for hub ids, where a replay starts and what the
response header says, and the memory publisher-id index (earliest wins, bounded).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sse_hub.mercure.ids import Cursor, CursorKind, parse_cursor, response_cursor, resume_after
from sse_hub.messages.mercure import InvalidEventId, check_publisher_id, hub_event_id


def test_hub_ids_are_fragments_of_the_sequence() -> None:
    assert hub_event_id(1) == "#1"
    assert hub_event_id(1234) == "#1234"
    assert parse_cursor("#1234") == Cursor(CursorKind.HUB, "#1234", 1234)
    with pytest.raises(ValueError):
        hub_event_id(0)


@given(st.integers(min_value=1, max_value=10**19 - 1))
def test_a_hub_id_parses_back_to_its_sequence(sequence: int) -> None:
    assert parse_cursor(hub_event_id(sequence)).sequence == sequence


EPOCHS = st.text("0123456789abcdefghijklmnopqrstuvwxyz", min_size=4, max_size=4)


@given(st.integers(min_value=1, max_value=10**19 - 1), EPOCHS)
def test_a_hub_id_at_a_feed_position_parses_back_to_that_position(sequence: int, epoch: str) -> None:
    event_id = hub_event_id(sequence, epoch)
    assert event_id == f"#{sequence}.{epoch}"
    assert parse_cursor(event_id) == Cursor(CursorKind.HUB, event_id, position=(sequence, epoch))


@given(st.one_of(st.text(min_size=1, max_size=40), st.integers(1, 10**6).map(hub_event_id)))
def test_a_valid_publisher_id_is_never_read_as_a_hub_id(event_id: str) -> None:
    try:
        check_publisher_id(event_id)
    except InvalidEventId:
        return
    assert parse_cursor(event_id).kind is CursorKind.PUBLISHER


@pytest.mark.parametrize(
    "value", ["#0", "#01", "#", "#1a", "#" + "9" * 20, "1234", "urn:uuid:1", 'id-["a"]', "#1.abc", "#1.ABCD", "#0.abcd"]
)
def test_other_cursors_are_publisher_ids(value: str) -> None:
    assert parse_cursor(value) == Cursor(CursorKind.PUBLISHER, value)


def test_earliest_is_its_own_cursor() -> None:
    assert parse_cursor("earliest").kind is CursorKind.EARLIEST


@pytest.mark.parametrize("value", ["#1", "#x", "earliest", "a\nb", "a\rb", "a\x00b", "x" * 1025])
def test_refused_publisher_ids(value: str) -> None:
    with pytest.raises(InvalidEventId):
        check_publisher_id(value)


@pytest.mark.parametrize("value", ["a", "urn:uuid:1", "1234", "Earliest", "x#1", " spaced ", "x" * 1024])
def test_accepted_publisher_ids(value: str) -> None:
    check_publisher_id(value)


def test_where_a_replay_resumes() -> None:
    last = 100
    assert resume_after(parse_cursor("earliest"), None, last) is None
    assert resume_after(parse_cursor("#42"), None, last) == 42
    assert resume_after(parse_cursor("#100"), None, last) == 100
    assert resume_after(parse_cursor("#101"), None, last) is None  # from the future: unknown
    assert resume_after(parse_cursor("pub-id"), 42, last) == 42
    assert resume_after(parse_cursor("pub-id"), None, last) is None
    assert resume_after(parse_cursor("#42"), 7, last) == 42  # an index answer never overrides a hub id


def test_the_response_header_repeats_the_cursor_only_when_nothing_was_lost() -> None:
    cursor = parse_cursor("pub-id")
    assert response_cursor(cursor, 42, expired=False, history_empty=False) == "pub-id"
    assert response_cursor(cursor, 42, expired=True, history_empty=False) == "earliest"
    assert response_cursor(cursor, 42, expired=False, history_empty=True) == "earliest"
    assert response_cursor(cursor, None, expired=False, history_empty=False) == "earliest"
    assert response_cursor(parse_cursor("earliest"), None, expired=False, history_empty=False) == "earliest"
