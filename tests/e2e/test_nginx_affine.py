"""Real nginx running deploy/nginx-channel-affine.conf in front of two real hubs on Redis:
every stream of a channel lands on one hub, whichever URL form names the channel, and
messages published through nginx reach them. The rewrite for loopback changes only the
hub addresses, listen port and file paths (as deploy/local.sh does for nginx.conf)."""

from __future__ import annotations

import contextlib
import re
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.http import broadcast, open_stream
from tests.support.paths import ROOT
from tests.support.processes import HubProcess, free_port, require_binary, wait_for_port

CONF = ROOT / "deploy" / "nginx-channel-affine.conf"


def render(workdir: Path, listen_port: int, hub_ports: list[int]) -> Path:
    text = CONF.read_text()
    servers = "".join(f"\n        server 127.0.0.1:{port};" for port in hub_ports)
    text = re.sub(r"^ *server hub\d+:8080.*\n", "", text, flags=re.M)
    text = re.sub(r"^( *upstream sse_hub(_streams)? \{(\n *hash .*)?)", rf"\1{servers}", text, flags=re.M)
    temp = "".join(f"\n    {kind}_temp_path {workdir}/{kind};" for kind in ("client_body", "proxy", "fastcgi"))
    text = text.replace("http {", "http {" + temp, 1)
    text = re.sub(r"^user .*\n", "", text, flags=re.M).replace("worker_rlimit_nofile 65536;", "")
    text = text.replace("/var/log/nginx/access.log", f"{workdir}/access.log")
    text = text.replace("listen 80;", f"listen 127.0.0.1:{listen_port};")
    path = workdir / "nginx.conf"
    path.write_text(f"pid {workdir}/nginx.pid;\n{text}")
    return path


@pytest.fixture
def cluster(
    redis_server: str, hub_process: Callable[..., HubProcess], tmp_path: Path
) -> Iterator[tuple[str, list[HubProcess]]]:
    nginx = require_binary("nginx", "nginx-light")
    env = {
        "SSE_HUB_BROKER__BACKEND": "redis",
        "SSE_HUB_BROKER__REDIS_URL": redis_server,
        "SSE_HUB_BROKER__PREFIX": f"test-affine-{uuid.uuid4().hex[:12]}",
    }
    hubs = [hub_process(env=env), hub_process(env=env)]
    port = free_port()
    conf = render(tmp_path, port, [hub.port for hub in hubs])
    log_path = tmp_path / "nginx.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [nginx, "-p", f"{tmp_path}/", "-c", str(conf), "-g", "daemon off;"], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        try:
            wait_for_port(port, process)
        except RuntimeError as exc:
            raise AssertionError(f"{exc}\n{log_path.read_text()}") from exc
        yield f"http://127.0.0.1:{port}", hubs
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def channel_counts(session: aiohttp.ClientSession, hub: HubProcess) -> dict[str, int]:
    async with session.get(f"{hub.url}/stats?limit=0") as response:
        counts: dict[str, int] = (await response.json())["channels"]
        return counts


async def test_every_stream_of_a_channel_lands_on_one_hub_whatever_the_url_form(
    cluster: tuple[str, list[HubProcess]], session: aiohttp.ClientSession
) -> None:
    url, hubs = cluster
    channels = [f"room-{n}" for n in range(8)]
    forms = ["/events/{}", "/events?channel={}", "/events?channels={},other"]
    async with contextlib.AsyncExitStack() as stack:
        streams = {}
        for channel in channels:
            for form in forms:
                streams[channel, form] = await stack.enter_async_context(
                    open_stream(session, url + form.format(channel))
                )
        per_hub = [await channel_counts(session, hub) for hub in hubs]
        for channel in channels:
            holders = [counts.get(channel, 0) for counts in per_hub]
            assert sorted(holders) == [0, len(forms)], f"{channel}: {holders}"
        assert all(per_hub), "the hash spreads 8 channels over both hubs"
        receipt = await broadcast(session, url, {"channel": channels[0], "data": "through nginx"})
        for form in forms:
            event = await streams[channels[0], form].next_message()
            assert (event.id, event.data) == (receipt["id"], "through nginx")
