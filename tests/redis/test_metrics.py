"""The broker gauge of ``/metrics`` through a real Redis outage: connected, then not (a
publish refused and counted as a publish error), then again with the reconnect counted,
one log line per change (the metrics through the app:
tests/app/test_metrics.py)."""

from __future__ import annotations

import logging
import re

import pytest

from sse_hub.web.state import HUB
from tests.support.http import publish
from tests.support.metrics import scrape
from tests.support.plugin import HubsFactory
from tests.support.processes import RedisProcess
from tests.support.waiting import wait_until


async def test_broker_gauge_follows_a_redis_outage_and_the_refused_publish_and_reconnect_are_counted(
    start_hubs: HubsFactory, own_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sse_hub.broker")
    [client] = await start_hubs("redis", 1, url=own_redis.url)
    hub = client.server.app[HUB]
    before = await scrape(client)
    assert (before.value("sse_hub_broker_connected"), before.value("sse_hub_broker_reconnects_total")) == (1, 0)

    caplog.clear()
    own_redis.kill()
    await wait_until(lambda: not hub.broker.connected, timeout=15)
    await publish(client, {"channel": "news", "data": "while Redis is down"}, expect=503)
    down = await scrape(client)
    assert (down.value("sse_hub_broker_connected"), down.value("sse_hub_broker_reconnects_total")) == (0, 0)
    assert (down.value("sse_hub_publish_errors_total"), down.value("sse_hub_messages_published_total")) == (1, 0)

    own_redis.start()
    # The broker's reconnect backoff is capped at 5 s.
    await wait_until(lambda: hub.broker.connected, timeout=15)
    after = await scrape(client)
    assert (after.value("sse_hub_broker_connected"), after.value("sse_hub_broker_reconnects_total")) == (1, 1)
    # One log line per broker state change; each failed reconnect attempt only at DEBUG.
    changes = [
        (record.levelname, record.getMessage())
        for record in caplog.records
        if record.levelno > logging.DEBUG and record.name.startswith("sse_hub.broker")
    ]
    assert [(level, re.split(r" \(| after", message)[0]) for level, message in changes] == [
        ("WARNING", "redis connection lost"),
        ("WARNING", "redis: messages may have been missed while disconnected"),  # it came back empty
        ("INFO", "redis connection restored"),
    ], changes
