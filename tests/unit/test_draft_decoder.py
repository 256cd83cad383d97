"""The fast publish decoder (``messages/draft_decoder.py``) builds exactly the drafts the
``PublishItem`` model builds, or leaves the body to the model: never other values, never
a body the model refuses."""

from __future__ import annotations

import json

from hypothesis import example, given, settings
from hypothesis import strategies as st

from sse_hub.errors import BadRequest
from sse_hub.messages.draft_decoder import decode_drafts
from sse_hub.messages.message import Draft
from sse_hub.web.bodies import parse_drafts, parse_items

PUBLISHED_AT = 1_700_000_000.5

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
)
NAMES = st.sampled_from(["news", "a.b", "x" * 128, "x" * 129, "", "bad name", "news\n", "*", "é", "{t}", 7])
FIELDS = {
    "data": JSON_VALUES,
    "event": st.sampled_from(["message", "tick", "", "a\nb", "a\x00", "y" * 128, "y" * 129, "\u2028", 3]),
    "channels": st.none() | st.lists(NAMES, max_size=4) | NAMES,
    "channel": st.none() | NAMES,
    "retry": st.sampled_from([None, 0, 1500, 86_400_000, 86_400_001, -1, 1.0, True, "5"]),
    "exclude_client_id": st.sampled_from([None, "c1", "", "z" * 129, 4]),
    "client_id": st.sampled_from([None, None, None, "c1", "", "z" * 129]),
    "final": st.sampled_from([False, True, None, 1, "true"]),
    "extra": st.just(1),
}
ITEMS = st.fixed_dictionaries({"data": FIELDS["data"]}, optional={k: v for k, v in FIELDS.items() if k != "data"})


def by_the_model(body: bytes) -> list[Draft] | str:
    """What the model's path makes of a body: its drafts, or the name of its error."""
    try:
        items, _ = parse_items(body, max_batch=1000)
        return [item.to_draft(PUBLISHED_AT) for item in items]
    except (BadRequest, ValueError) as exc:
        return type(exc).__name__


def check(body: bytes, batch: bool) -> None:
    fast = decode_drafts(body, batch, PUBLISHED_AT)
    if fast is not None:
        assert fast == by_the_model(body)


@settings(max_examples=400)
@given(ITEMS, st.booleans())
@example({"data": 1e400}, False)
@example({"data": "a", "channels": ["news"], "channel": "news"}, False)
@example({"data": "a", "final": True}, False)
@example({"data": "a", "channel": "news\n"}, False)
@example({"data": "a", "channels": ["news", "news\n"]}, False)
@example({"data": "a", "channels": ["news"], "event": "tick\n"}, False)
@example({"data": "a", "client_id": "c1", "final": True}, False)
def test_one_message_decodes_as_the_model_decodes_it(item: dict[str, object], spaced: bool) -> None:
    check(json.dumps(item, indent=1 if spaced else None).encode(), batch=False)


@settings(max_examples=200)
@given(st.lists(ITEMS, max_size=4))
def test_a_batch_decodes_as_the_model_decodes_it(items: list[dict[str, object]]) -> None:
    check(json.dumps(items).encode(), batch=True)


@given(st.binary(max_size=40) | st.text(max_size=40).map(str.encode))
@example(b'{"data":"\\ud800"}')
@example(b'{"data":"\xed\xa0\x80"}')
@example(b'{"data":1,"event":"a","event":"b"}')
@example(b'{"data":{"k":1,"k":2}}')
@example(b'{"data":NaN}')
@example(b'{"data":1} x')
def test_any_bytes_decode_as_the_model_decodes_them_or_go_to_it(body: bytes) -> None:
    check(body, batch=False)
    check(b"[" + body + b"]", batch=True)


def test_the_benchmarks_batch_takes_the_fast_way() -> None:
    body = b'[{"channels":["bench1"],"event":"tick","data":{"t":1,"seq":2,"pad":"xx"}},{"data":"hi"}]'
    drafts = decode_drafts(body, True, PUBLISHED_AT)
    assert drafts is not None
    assert drafts == by_the_model(body)
    assert parse_drafts(body, 1000, PUBLISHED_AT) == (drafts, True)


def test_a_batch_over_the_limit_gets_the_models_error() -> None:
    body = json.dumps([{"data": 1}] * 3).encode()
    try:
        parse_drafts(body, 2, PUBLISHED_AT)
    except BadRequest as exc:
        assert "at most 2" in str(exc)
    else:
        raise AssertionError("a batch over max_batch was accepted")
