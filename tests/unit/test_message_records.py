"""Draft and Message compare as they did when frozen at run time (they are frozen to the
type checker only, ``messages/message.py``): a Draft by its fields, hashed by them; a
Message only to itself."""

from __future__ import annotations

from sse_hub.messages.message import Draft


def test_drafts_with_the_same_fields_are_equal_and_hash_alike() -> None:
    first, second = Draft("tick", "hi", ("news",)), Draft("tick", "hi", ("news",))
    assert first == second
    assert len({first, second}) == 1
    assert first != Draft("tick", "hi", ("sport",))


def test_a_message_is_equal_only_to_itself() -> None:
    draft = Draft("tick", "hi", ("news",))
    one, twin = draft.numbered(7), draft.numbered(7)
    assert one == one
    assert one != twin
    assert len({one, twin}) == 2


def test_numbering_keeps_every_field_of_the_draft() -> None:
    draft = Draft("tick", "hi", ("news",), 1500, None, "c1", False, 12.5, None, True)
    message = draft.numbered(9)
    assert (message.id, message.event, message.data, message.channels) == (9, "tick", "hi", ("news",))
    kept = (message.retry_ms, message.exclude_client_id, message.published_at, message.final)
    assert kept == (1500, "c1", 12.5, True)
    assert message.chunk == b"28\r\nid: 9\nevent: tick\nretry: 1500\ndata: hi\n\n\r\n"
