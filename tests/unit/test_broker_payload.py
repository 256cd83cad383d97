"""The broker's wire form of a message: the payload tail the Redis publish script numbers
(``{"id":N`` + tail) reads back as the same message."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sse_hub.messages.message import Draft, message_from_payload, payload_tail

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)  # no lone surrogates: not UTF-8
DRAFTS = st.builds(
    Draft,
    event=st.from_regex(r"[^\r\n\x00]{1,20}", fullmatch=True),
    data=TEXT,
    channels=st.sampled_from([("*",), ("news",), ("a", "b-c.d_e"), ()]),
    retry_ms=st.none() | st.integers(0, 86_400_000),
    client_id=st.none() | st.text(min_size=1, max_size=10),
    exclude_client_id=st.none() | st.text(min_size=1, max_size=10),
    kick=st.booleans(),
    published_at=st.floats(0, 2e9),
)


@given(draft=DRAFTS, message_id=st.integers(1, 2**53))
def test_the_numbered_tail_is_the_numbered_draft(draft: Draft, message_id: int) -> None:
    numbered = draft.numbered(message_id)
    payload = b'{"id":%d' % message_id + payload_tail(draft)
    assert payload == numbered.to_payload()
    back = message_from_payload(payload)
    assert back.to_payload() == payload
    assert back.chunk == numbered.chunk
    fields = ("channels", "client_id", "exclude_client_id", "kick", "retry_ms", "published_at")
    assert back.id == message_id
    assert [getattr(back, name) for name in fields] == [getattr(draft, name) for name in fields]
