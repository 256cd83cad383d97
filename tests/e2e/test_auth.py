"""Auth on a real ``sse-hub`` process: tokens from the environment, and credentials kept out
of its logs (the auth matrix and subscriber JWTs through the app: tests/app/test_auth.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aiohttp

from tests.support.processes import HubProcess
from tests.support.raw_http import get_request, status_of
from tests.support.tokens import SECRET, Signer, bearer

HubFactory = Callable[..., HubProcess]


TIMEOUT = 5


async def test_tokens_from_the_environment_protect_a_real_process(hub_process: HubFactory) -> None:
    hub = hub_process(
        env={"SSE_HUB_AUTH__PUBLISH_TOKENS": "[pub-a, pub-b]", "SSE_HUB_AUTH__ADMIN_TOKENS": "adm-a,adm-b"}
    )
    expected = {
        ("/broadcast", None): 401,
        ("/broadcast", "pub-a"): 202,
        ("/broadcast", "pub-b"): 202,
        ("/broadcast", "adm-b"): 202,
        ("/broadcast", "pub-c"): 403,
        ("/broadcast", "[pub-a, pub-b]"): 403,
        ("/stats", None): 401,
        ("/stats", "adm-a"): 200,
        ("/stats", "adm-b"): 200,
        ("/stats", "pub-a"): 403,
    }
    actual = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        for path, token in expected:
            headers = bearer(token) if token else {}
            if path == "/broadcast":
                request = session.post(f"{hub.url}{path}", json={"data": 1}, headers=headers)
            else:
                request = session.get(f"{hub.url}{path}", headers=headers)
            async with request as response:
                actual[path, token] = response.status
    assert actual == expected
    assert "pub-a" not in hub.log() and "adm-a" not in hub.log()


async def test_a_subscriber_token_in_the_url_never_reaches_the_log(
    hub_process: HubFactory, signers: dict[str, Signer]
) -> None:
    signer = signers["HS256"]
    hub = hub_process(env={"SSE_HUB_LOG__LEVEL": "debug", "SSE_HUB_AUTH__SUBSCRIBER_JWT__SECRET": SECRET})
    token = signer.token(["news"])
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        # A stream the server ends (DELETE) is access-logged, with its query.
        async with session.get(f"{hub.url}/events/news?token={token}&x=1") as stream:
            assert stream.status == 200
            connected = json.loads((await stream.content.readuntil(b"\n\n")).split(b"data: ")[1])
            async with session.delete(f"{hub.url}/clients/{connected['client_id']}") as deleted:
                assert deleted.status == 200
            await stream.read()
        for query in (f"token={token}", f"TOKEN={token}&token={token}", f"%74oken={token}"):
            async with session.get(f"{hub.url}/events/secret?{query}") as refused:
                assert refused.status in (401, 403)
        async with session.get(f"{hub.url}/events/news", headers=bearer(token + "x")) as refused:
            assert refused.status == 401
    assert await asyncio.to_thread(hub.stop) == 0
    log = hub.log()
    assert token not in log
    assert token.split(".")[2] not in log, "not even the signature"
    assert "GET /events/news?token=[redacted]&x=1 200" in log
    assert "token=[redacted]" in log and "TOKEN=[redacted]" in log


async def test_a_token_in_a_request_aiohttp_cannot_parse_never_reaches_the_log(
    hub_process: HubFactory, signers: dict[str, Signer]
) -> None:
    """aiohttp logs requests it cannot parse at ERROR with the raw request line: a URL a
    little too long, or one bad byte, would log the token in clear."""
    hub = hub_process(env={"SSE_HUB_AUTH__SUBSCRIBER_JWT__SECRET": SECRET})
    token = signers["HS256"].token(["news"])
    attacks = [
        get_request(f"/events/news?token={token}&pad={'p' * 9000}".encode()),
        get_request(f"/events/news?token={token}".encode() + b"\x7f"),
        get_request(f"/events/news?token={token}".encode(), b"Bad Header: \x01"),
        get_request(b"/events/news", f"Authorization: Bearer {token}\x01".encode()),
    ]
    for attack in attacks:
        assert 400 <= await status_of(hub.port, attack) < 500
    assert await asyncio.to_thread(hub.stop) == 0
    log = hub.log()
    assert token not in log
    assert token.split(".")[2][:20] not in log
