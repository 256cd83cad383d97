"""``unavailable``: a Redis, cluster or socket error in the block is ``BrokerUnavailable``
(503), chained; anything else passes unchanged."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError, SlotNotCoveredError

from sse_hub.broker.redis.errors import unavailable
from sse_hub.errors import BrokerUnavailable


@pytest.mark.parametrize(
    ("error", "cause", "message"),
    [
        (RedisConnectionError("refused"), False, "cannot read"),
        (MovedError("3999 127.0.0.1:6381"), True, "cannot read: 3999 127.0.0.1:6381"),
        (SlotNotCoveredError("slot 7 is not covered"), True, "cannot read: slot 7 is not covered"),
        (ConnectionResetError("reset"), True, "cannot read: reset"),
        (TimeoutError(), True, "cannot read: "),
    ],
)
def test_redis_and_socket_errors_become_broker_unavailable(error: Exception, cause: bool, message: str) -> None:
    with pytest.raises(BrokerUnavailable) as raised, unavailable("cannot read", cause=cause):
        raise error
    assert raised.value.message == message
    assert raised.value.__cause__ is error


@pytest.mark.parametrize("error", [ValueError("a bug"), BrokerUnavailable("already said")])
def test_other_errors_pass_unchanged(error: Exception) -> None:
    with pytest.raises(type(error)) as raised, unavailable("cannot read"):
        raise error
    assert raised.value is error
