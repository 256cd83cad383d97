"""Auth: the publish/admin token matrix, subscriber JWTs (HS256, RS256, ES256) from a
header, ``?token=`` or the cookie, the ``channels`` claim, expiry that ends the stream,
and credentials kept out of the logs (of a real process: tests/e2e/test_auth.py).

Secrets are 32 bytes or more: PyJWT warns about shorter HMAC keys, and warnings are errors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp.http_exceptions import LineTooLong
from aiohttp.test_utils import TestClient

from sse_hub.config.settings import AuthConfig, SubscriberJwtConfig
from sse_hub.web import auth
from sse_hub.web.access_log import SecretFilter, redact_text
from sse_hub.web.auth import pattern_matches
from sse_hub.web.state import HUB
from tests.support.http import HubClientFactory, expect_error, open_stream
from tests.support.processes import HubProcess
from tests.support.raw_http import status_of
from tests.support.settings import make_settings
from tests.support.tokens import SECRET, Signer, bearer
from tests.support.waiting import wait_until

HubFactory = Callable[..., HubProcess]
TIMEOUT = 5

PUBLISH = "publish-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
WRONG = "not-a-token-0123456789abcdef"


async def assert_error(response: aiohttp.ClientResponse, status: int) -> None:
    payload = await expect_error(response, status)
    assert payload["error"] == {401: "unauthorized", 403: "forbidden"}[status]
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


# -- publish and admin tokens -----------------------------------------------------------

CONFIGS: dict[str, dict[str, list[str]]] = {
    "no-tokens": {},
    "admin-only": {"admin_tokens": [ADMIN]},
    "publish-only": {"publish_tokens": [PUBLISH]},
    "both": {"publish_tokens": [PUBLISH], "admin_tokens": [ADMIN]},
}
CREDENTIALS = {"none": None, "publish": PUBLISH, "admin": ADMIN, "wrong": WRONG}
OK = 0  # the endpoint's own success status, filled in below

# config, endpoint: status with no token, the publish token, the admin token, a wrong token.
MATRIX: dict[tuple[str, str], tuple[int, int, int, int]] = {
    ("no-tokens", "broadcast"): (OK, OK, OK, OK),
    ("no-tokens", "stats"): (OK, OK, OK, OK),
    ("no-tokens", "metrics"): (OK, OK, OK, OK),
    ("no-tokens", "delete-client"): (OK, OK, OK, OK),
    ("admin-only", "broadcast"): (OK, OK, OK, OK),
    ("admin-only", "stats"): (401, 403, OK, 403),
    ("admin-only", "metrics"): (401, 403, OK, 403),
    ("admin-only", "delete-client"): (401, 403, OK, 403),
    ("publish-only", "broadcast"): (401, OK, 403, 403),
    ("publish-only", "stats"): (OK, OK, OK, OK),
    ("publish-only", "metrics"): (OK, OK, OK, OK),
    ("publish-only", "delete-client"): (OK, OK, OK, OK),
    ("both", "broadcast"): (401, OK, OK, 403),
    ("both", "stats"): (401, 403, OK, 403),
    ("both", "metrics"): (401, 403, OK, 403),
    ("both", "delete-client"): (401, 403, OK, 403),
}
SUCCESS = {"broadcast": 202, "stats": 200, "metrics": 200, "delete-client": 404}  # 404: no such client


async def call(client: TestClient[Any, Any], endpoint: str, token: str | None) -> aiohttp.ClientResponse:
    headers = bearer(token) if token is not None else {}
    if endpoint == "broadcast":
        return await client.post("/broadcast", json={"channel": "m", "data": 1}, headers=headers)
    if endpoint == "delete-client":
        return await client.delete("/clients/c_nobody", headers=headers)
    return await client.get(f"/{endpoint}", headers=headers)


@pytest.mark.parametrize("config", list(CONFIGS))
async def test_publish_and_admin_endpoints_follow_the_auth_matrix(hub_client: HubClientFactory, config: str) -> None:
    client = await hub_client(auth=CONFIGS[config])
    expected: dict[tuple[str, str], int] = {}
    actual: dict[tuple[str, str], int] = {}
    for (row_config, endpoint), statuses in MATRIX.items():
        if row_config != config:
            continue
        for (credential, token), status in zip(CREDENTIALS.items(), statuses, strict=True):
            expected[endpoint, credential] = status or SUCCESS[endpoint]
            response = await call(client, endpoint, token)
            actual[endpoint, credential] = response.status
            if response.status in (401, 403):
                await assert_error(response, response.status)
            response.release()
    assert actual == expected


@pytest.mark.parametrize(
    "authorization",
    ["Basic cHVibGlzaDp4", "Bearer", "Bearer ", "Token " + PUBLISH, PUBLISH, ""],
    ids=["basic", "bearer-alone", "bearer-blank", "other-scheme", "no-scheme", "empty"],
)
async def test_a_missing_or_non_bearer_credential_is_401(hub_client: HubClientFactory, authorization: str) -> None:
    client = await hub_client(auth=CONFIGS["both"])
    for path in ("/broadcast", "/stats"):
        response = await client.request(
            "POST" if path == "/broadcast" else "GET",
            path,
            json={"data": 1} if path == "/broadcast" else None,
            headers={"Authorization": authorization},
        )
        await assert_error(response, 401)


@pytest.mark.parametrize(
    "token",
    [PUBLISH[:-1], PUBLISH + "x", PUBLISH.upper(), " " + PUBLISH + "x", PUBLISH + "\t" + PUBLISH, "x" * 5000],
    ids=["prefix", "extension", "case", "padded", "doubled", "huge"],
)
async def test_a_near_miss_token_is_403(hub_client: HubClientFactory, token: str) -> None:
    client = await hub_client(auth=CONFIGS["both"])
    await assert_error(await client.post("/broadcast", json={"data": 1}, headers=bearer(token)), 403)


async def test_the_bearer_scheme_is_case_insensitive(hub_client: HubClientFactory) -> None:
    client = await hub_client(auth=CONFIGS["both"])
    for scheme in ("bearer", "BEARER", "Bearer"):
        response = await client.get("/stats", headers={"Authorization": f"{scheme} {ADMIN}"})
        assert response.status == 200, scheme


async def test_tokens_are_compared_in_constant_time_against_every_configured_token(
    hub_client: HubClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    compare_digest = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return compare_digest(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    tokens = [f"publish-{n}-0123456789abcdef" for n in range(3)]
    client = await hub_client(auth={"publish_tokens": tokens})
    # The first token matches, yet every configured token is compared: no early exit.
    assert (await client.post("/broadcast", json={"data": 1}, headers=bearer(tokens[0]))).status == 202
    assert compared == [(tokens[0].encode(), token.encode()) for token in tokens]


NOT_UTF8_BEARERS = [b"Authorization: Bearer \xff\xfe", b"Authorization: Bearer \xc3", b"Authorization: Bearer a\x80b"]


@pytest.mark.parametrize(
    ("method", "path", "credentials", "expected"),
    [
        (b"POST", b"/broadcast", NOT_UTF8_BEARERS, 403),
        (b"GET", b"/stats", NOT_UTF8_BEARERS, 403),
        (b"POST", b"/tickets", NOT_UTF8_BEARERS, 403),
        (b"GET", b"/events/news", [*NOT_UTF8_BEARERS, b"Cookie: sse_hub_token=\xff"], 401),
    ],
    ids=["broadcast", "stats", "tickets", "stream"],
)
async def test_a_credential_that_is_not_utf8_is_refused_not_a_server_error(
    hub_client: HubClientFactory, method: bytes, path: bytes, credentials: list[bytes], expected: int
) -> None:
    client = await hub_client(auth={**CONFIGS["both"], "subscriber_jwt": {"secret": SECRET}})
    for credential in credentials:
        request = (
            method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\nConnection: close\r\n" + credential + b"\r\n\r\n{}"
        )
        assert await status_of(client.port, request) == expected, credential


# -- subscriber JWTs --------------------------------------------------------------------


def credential(source: str, token: str) -> tuple[str, dict[str, str]]:
    """The query suffix and headers that carry ``token`` from ``source``."""
    if source == "header":
        return "", bearer(token)
    if source == "query":
        return f"?token={token}", {}
    return "", {"Cookie": f"{auth.TOKEN_COOKIE}={token}"}


@pytest.mark.parametrize("source", ["header", "query", "cookie"])
@pytest.mark.parametrize("algorithm", ["HS256", "RS256", "ES256"])
async def test_a_valid_subscriber_token_opens_a_stream(
    hub_client: HubClientFactory, signers: dict[str, Signer], algorithm: str, source: str
) -> None:
    signer = signers[algorithm]
    client = await hub_client(auth={"subscriber_jwt": signer.config})
    await assert_error(await client.get("/events/orders"), 401)
    query, headers = credential(source, signer.token(["orders"]))
    async with open_stream(client, f"/events/orders{query}", headers) as stream:
        response = await client.post("/broadcast", json={"channel": "orders", "data": "first"})
        assert (await stream.next_message()).data == "first", await response.text()


async def test_the_authorization_header_wins_over_the_query_and_the_cookie(
    hub_client: HubClientFactory, signers: dict[str, Signer]
) -> None:
    signer = signers["HS256"]
    client = await hub_client(auth={"subscriber_jwt": signer.config})
    narrow, wide = signer.token(["a"]), signer.token(["*"])
    response = await client.get(
        f"/events/b?token={wide}", headers={**bearer(narrow), "Cookie": f"sse_hub_token={wide}"}
    )
    await assert_error(response, 403)
    async with open_stream(client, f"/events/b?token={wide}", {"Cookie": f"sse_hub_token={narrow}"}):
        pass  # the query wins over the cookie


@pytest.mark.parametrize(
    ("pattern", "channel", "allowed"),
    [
        ("*", "anything", True),
        ("*", "stocks.a.b", True),
        ("stocks.*", "stocks.a", True),
        ("stocks.*", "stocks.a.b", True),
        ("stocks.*", "stocks", False),
        ("stocks.*", "stocks.", False),
        ("stocks.*", "stocksx", False),
        ("stocks.*", "stocksx.a", False),
        ("stocks.*", "other.stocks.a", False),
        ("stocks", "stocks", True),
        ("stocks", "stocks.a", False),
        ("stocks*", "stocksx", False),
        ("", "stocks", False),
    ],
)
def test_channel_patterns_match_as_the_contract_says(pattern: str, channel: str, allowed: bool) -> None:
    assert pattern_matches(pattern, channel) is allowed


@pytest.mark.parametrize(
    ("claim", "path", "expected"),
    [
        (["*"], "/events/anything", 200),
        (["stocks.*"], "/events/stocks.a", 200),
        (["stocks.*"], "/events/stocks.a.b", 200),
        (["stocks.*"], "/events/stocks", 403),
        (["stocks.*"], "/events/stocksx.a", 403),
        (["stocks.*", "news"], "/events?channel=news&channel=stocks.eu", 200),
        (["stocks.*"], "/events?channel=stocks.eu&channel=news", 403),
        ("news", "/events/news", 200),
        ([], "/events/news", 403),
        (None, "/events/news", 403),
        ({"news": True}, "/events/news", 403),
        ([["news"]], "/events/news", 403),
        (["news"], "/api/events", 403),  # an alias is bound to its own channels (`events`)
        (["events"], "/api/events", 200),
    ],
)
async def test_the_channels_claim_bounds_what_may_be_subscribed(
    hub_client: HubClientFactory, signers: dict[str, Signer], claim: object, path: str, expected: int
) -> None:
    signer = signers["HS256"]
    client = await hub_client(auth={"subscriber_jwt": signer.config})
    response = await client.get(path, headers=bearer(signer.token(claim)))
    try:
        if expected == 200:
            assert response.status == 200, await response.text()
        else:
            await assert_error(response, expected)
    finally:
        response.close()
    await wait_until(lambda: len(client.server.app[HUB].registry) == 0)


async def test_a_forbidden_channel_is_named_in_the_403(
    hub_client: HubClientFactory, signers: dict[str, Signer]
) -> None:
    signer = signers["HS256"]
    client = await hub_client(auth={"subscriber_jwt": signer.config})
    response = await client.get("/events?channel=news&channel=secret", headers=bearer(signer.token(["news"])))
    await assert_error(response, 403)
    assert (await response.json())["detail"] == {"channels": ["secret"]}
    assert len(client.server.app[HUB].registry) == 0


def forged_hs256(payload: dict[str, Any], key: bytes) -> str:
    """An HS256 token signed with ``key`` by hand: PyJWT refuses to sign with a PEM key,
    which is exactly the algorithm-confusion attack to try."""

    def segment(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = segment(b'{"alg":"HS256","typ":"JWT"}') + b"." + segment(json.dumps(payload).encode())
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + segment(signature)).decode()


def bad_tokens(signers: dict[str, Signer]) -> dict[str, str]:
    signer = signers["HS256"]
    claims = {"channels": ["*"], "exp": int(time.time()) + 60}
    other = Signer("HS256", "another-secret-0123456789abcdef-0123456789", {})
    return {
        "garbage": "not.a.jwt",
        "empty-segments": "..",
        "expired": signer.token(ttl=-60),
        "expired-within-leeway": signer.token(ttl=-2),
        "wrong-signature": other.token(),
        "alg-none": jwt.encode(claims, None, algorithm="none"),
        "signature-stripped": forged_hs256(claims, SECRET.encode()).rsplit(".", 1)[0] + ".",
        "not-yet-valid": signer.token(nbf=int(time.time()) + 600),
        "non-integer-exp": jwt.encode({"channels": ["*"], "exp": "soon"}, SECRET, algorithm="HS256"),
        "rs256-token-for-an-hs256-hub": signers["RS256"].token(),
        "unknown-audience": signer.token(aud="someone-else"),
        "non-ascii": signer.token() + "é",
    }


BAD_TOKEN_NAMES = [
    "garbage",
    "empty-segments",
    "expired",
    "expired-within-leeway",
    "wrong-signature",
    "alg-none",
    "signature-stripped",
    "not-yet-valid",
    "non-integer-exp",
    "rs256-token-for-an-hs256-hub",
    "unknown-audience",
    "non-ascii",
]


@pytest.mark.parametrize("source", ["header", "query", "cookie"])
@pytest.mark.parametrize("name", BAD_TOKEN_NAMES)
async def test_a_missing_or_invalid_subscriber_token_is_401(
    hub_client: HubClientFactory, signers: dict[str, Signer], name: str, source: str
) -> None:
    client = await hub_client(auth={"subscriber_jwt": signers["HS256"].config})
    query, headers = credential(source, bad_tokens(signers)[name])
    await assert_error(await client.get(f"/events/news{query}", headers=headers), 401)
    await assert_error(await client.get("/events/news"), 401)
    assert client.server.app[HUB].counters.connects == 0


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
async def test_an_hs256_token_signed_with_the_public_key_is_401(
    hub_client: HubClientFactory, signers: dict[str, Signer], algorithm: str
) -> None:
    """Algorithm confusion: the public key is public, so it must never work as an HMAC
    secret, even when the operator also lists HS256. The loader refuses that list
    (tests/unit/test_config_checks.py); built around the loader, the hub still refuses the token."""
    signer = signers[algorithm]
    jwt_config = SubscriberJwtConfig.model_construct(**{**signer.config, "algorithms": [algorithm, "HS256"]})
    settings = make_settings().model_copy(update={"auth": AuthConfig.model_construct(subscriber_jwt=jwt_config)})
    client = await hub_client(settings)
    token = forged_hs256({"channels": ["*"], "exp": int(time.time()) + 60}, signer.public_pem)
    await assert_error(await client.get("/events/news", headers=bearer(token)), 401)
    async with open_stream(client, "/events/news", bearer(signer.token())):
        pass  # the real key still works


async def test_the_stream_ends_when_its_token_expires_and_the_same_token_is_then_401(
    hub_client: HubClientFactory, signers: dict[str, Signer]
) -> None:
    signer = signers["HS256"]
    client = await hub_client(auth={"subscriber_jwt": signer.config})
    token = signer.token(["news"], ttl=2)
    hub = client.server.app[HUB]
    async with open_stream(client, f"/events/news?token={token}") as stream:
        await stream.read_until_closed(timeout=2 + TIMEOUT)
    await wait_until(lambda: hub.counters.disconnects.get("token_expired") == 1)
    # EventSource reconnects with the same URL: it must get an error (and the page a
    # chance to fetch a fresh token), not another stream that ends at once.
    await assert_error(await client.get(f"/events/news?token={token}"), 401)


async def test_a_stream_whose_token_has_no_expiry_stays_open(
    hub_client: HubClientFactory, signers: dict[str, Signer]
) -> None:
    signer = signers["HS256"]
    client = await hub_client(auth={"subscriber_jwt": signer.config})
    async with open_stream(client, "/events/news", bearer(signer.token(["news"], ttl=None))) as stream:
        response = await client.post("/broadcast", json={"channel": "news", "data": "x"})
        assert response.status == 202
        assert (await stream.next_message()).data == "x"


async def test_a_token_with_a_far_future_expiry_opens_a_stream(
    hub_client: HubClientFactory, signers: dict[str, Signer]
) -> None:
    signer = signers["HS256"]
    client = await hub_client(auth={"subscriber_jwt": signer.config})
    for exp in (2**62, 10**30, 10**400):
        token = jwt.encode({"channels": ["*"], "exp": exp}, SECRET, algorithm="HS256")
        async with open_stream(client, "/events/news", bearer(token)):
            pass


async def test_a_head_request_needs_the_same_credential_as_a_get(
    hub_client: HubClientFactory, signers: dict[str, Signer]
) -> None:
    client = await hub_client(auth={"subscriber_jwt": signers["HS256"].config})
    assert await status_of(client.port, b"HEAD /events/news HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") == 401


# -- credentials never logged -----------------------------------------------------------


def test_the_secret_filter_redacts_aiohttp_parse_errors() -> None:
    error = LineTooLong("bytearray(b'/events/a?token=SECRET.JWT.SIG&pad=ppp...')", "8190")
    record = logging_record("Error handling request from %s", ("127.0.0.1",), error)
    assert SecretFilter().filter(record)
    message = record.getMessage()
    assert "SECRET" not in message and "token=[redacted]" in message and "127.0.0.1" in message
    assert record.exc_info is None
    assert redact_text("Authorization: Bearer abc.def.ghi, Cookie: sse_hub_token=xyz") == (
        "Authorization: Bearer [redacted], Cookie: sse_hub_token=[redacted]"
    )


def logging_record(message: str, args: tuple[object, ...], error: BaseException) -> logging.LogRecord:
    return logging.LogRecord(
        "aiohttp.server", logging.ERROR, __file__, 1, message, args, (type(error), error, error.__traceback__)
    )
