"""Real nginx running deploy/nginx.conf in front of two real ``sse-hub`` processes on one Redis.

The config under test is the shipped one: ``deploy/local.sh render-nginx-conf`` rewrites
only its hub addresses, listen port, log/pid/temp paths and drops the TLS lines (the
same rewrite ``deploy/local.sh`` runs by hand), so buffering, timeouts and forwarded
headers are exactly what users deploy. Subscribers go through nginx; publishers post to
each hub directly, so a received event proves the Redis fan-out and nginx's streaming.
"""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.http import broadcast, open_stream
from tests.support.nginx import NginxCluster, render_nginx_conf
from tests.support.processes import free_port, require_binary

CLIENT_IP = "203.0.113.7"  # TEST-NET-3 (RFC 5737): an address no real peer here has


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_subscriber_behind_nginx_gets_each_event_from_either_hub_once_in_order_unbuffered(
    nginx_cluster: NginxCluster, session: aiohttp.ClientSession
) -> None:
    hub_a, hub_b = nginx_cluster.hubs
    async with open_stream(session, f"{nginx_cluster.nginx.url}/events/ticker") as stream:
        # gzip would hold events back until its buffer fills (deploy/nginx.conf: gzip off).
        assert "Content-Encoding" not in stream.response.headers
        receipts, received = [], []
        for index in range(6):
            hub = (hub_a, hub_b)[index % 2]
            receipts.append(await broadcast(session, hub.url, {"channel": "ticker", "data": index}))
            # Awaited before the next publish: an event buffered anywhere on the way
            # (nginx, the hub) would never arrive here and time out instead.
            received.append(await stream.next(timeout=5))
        sentinel = await broadcast(session, hub_b.url, {"channel": "ticker", "data": "end"})
        after = await stream.next(timeout=5)
    assert [event.data for event in received] == [str(index) for index in range(6)]
    assert [event.id for event in received] == [receipt["id"] for receipt in receipts]
    ids = [int(receipt["id"]) for receipt in receipts]
    assert all(earlier < later for earlier, later in itertools.pairwise(ids))
    # Nothing between the last event and the sentinel: no event came twice.
    assert (after.id, after.data) == (sentinel["id"], "end")


async def test_hub_stats_show_the_client_address_nginx_forwarded(
    nginx_cluster: NginxCluster, session: aiohttp.ClientSession
) -> None:
    # nginx appends its peer: the hub sees "203.0.113.7, 127.0.0.1" from trusted
    # 127.0.0.1 and takes the right-most untrusted entry.
    headers = {"X-Forwarded-For": CLIENT_IP, "User-Agent": "nginx-test"}
    async with open_stream(session, f"{nginx_cluster.nginx.url}/events/whoami", headers=headers) as stream:
        connected = stream.parser.events[0].json()
        assert isinstance(connected, dict)
        client_id = connected["client_id"]
        found = []
        for hub in nginx_cluster.hubs:
            async with session.get(f"{hub.url}/stats") as response:
                stats = await response.json()
            found += [client for client in stats["clients"] if client["id"] == client_id]
    assert len(found) == 1, found
    assert (found[0]["ip"], found[0]["user_agent"], found[0]["channels"]) == (CLIENT_IP, "nginx-test", ["whoami"])


async def test_replay_through_nginx_resumes_after_last_event_id(
    nginx_cluster: NginxCluster, session: aiohttp.ClientSession
) -> None:
    hub_a, hub_b = nginx_cluster.hubs
    first = await broadcast(session, hub_a.url, {"channel": "replay", "data": "one"})
    await broadcast(session, hub_b.url, {"channel": "replay", "data": "two"})
    # Publishing through nginx works too.
    await broadcast(session, nginx_cluster.nginx.url, {"channel": "replay", "data": "three"})
    headers = {"Last-Event-ID": first["id"]}
    async with open_stream(session, f"{nginx_cluster.nginx.url}/events/replay", headers=headers) as stream:
        replayed = await stream.take(2)
        live = await broadcast(session, hub_a.url, {"channel": "replay", "data": "four"})
        after = await stream.next()
    assert [event.data for event in replayed] == ["two", "three"]
    assert (after.id, after.data) == (live["id"], "four")


async def test_nginx_answers_its_own_errors_in_the_hubs_json_shape(
    nginx_cluster: NginxCluster, session: aiohttp.ClientSession
) -> None:
    # Over client_max_body_size (64k, the hub's limits.max_message_bytes): 413.
    body = {"channel": "big", "data": "x" * 70_000}
    too_large = await broadcast(session, nginx_cluster.nginx.url, body, expect=413)
    assert too_large["error"] == "payload_too_large"
    # No hub answers: 503 with Retry-After, like a hub whose broker is down.
    for hub in nginx_cluster.hubs:
        assert hub.stop() == 0
    async with session.get(f"{nginx_cluster.nginx.url}/readyz") as response:
        unavailable = await response.json()
        assert (response.status, response.headers.get("Retry-After")) == (503, "5")
    assert unavailable["error"] == "unavailable"


def test_shipped_config_with_its_https_http2_listener_passes_nginx_t(nginx_binary: str, tmp_path: Path) -> None:
    openssl = require_binary("openssl", "openssl")
    key, cert = tmp_path / "privkey.pem", tmp_path / "fullchain.pem"
    self_signed = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
    subprocess.run(
        [openssl, *self_signed, "-keyout", str(key), "-out", str(cert)],
        capture_output=True,
        check=True,
    )
    conf = render_nginx_conf(tmp_path, free_port(), free_port(), [free_port()], tmp_path)
    assert "ssl http2;" in conf.read_text()
    result = subprocess.run(
        [nginx_binary, "-t", "-p", f"{tmp_path}/", "-c", str(conf)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
