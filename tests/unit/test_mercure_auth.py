"""Mercure auth without a server: where the token comes from, draft-07 tokens (``mercure``
claim) and 1.0 access tokens (RFC 9068 + ``authorization_details``), the publish and
subscribe decisions, and the RFC 6750 challenges.

HMAC secrets are 32 bytes or more: PyJWT warns about shorter ones, and warnings are errors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sse_hub.config.checks import MAX_GRANT_SECONDS
from sse_hub.config.settings import MercureJwtConfig
from sse_hub.mercure.auth import AccessTokenPolicy, JwtKey, MercureAuthorizer
from sse_hub.mercure.errors import MercureForbidden, MercureUnauthorized, bearer_challenge
from sse_hub.mercure.protocol import COOKIE, LEGACY_COOKIE, Protocol
from sse_hub.mercure.tokens import PresentedToken, TokenSource, select_token

HUB = "https://localhost/.well-known/mercure"
ISSUER = "https://localhost"
# The key and the publisher token of Mercure's conformance suite (v0.24.2): HS256,
# {"mercure": {"publish": ["*"], "subscribe": ["*"]}}, no exp.
SUITE_SECRET = "!ChangeThisMercureHubJWTSecretKey!"
SUITE_TOKEN = (
    "eyJhbGciOiJIUzI1NiJ9.eyJtZXJjdXJlIjp7InB1Ymxpc2giOlsiKiJdLCJzdWJzY3JpYmUiOlsiKiJdfX0"
    ".bVXdlWXwfw9ySx7-iV5OpUSHo34RkjUdVzDLBcc6l_g"
)
SUBSCRIBER_SECRET = "subscriber-secret-0123456789abcdef-0123456789"
DETAIL = "https://mercure.rocks/authorization-detail"
FAR_FUTURE = 4102444800


def header(token: str) -> PresentedToken:
    return PresentedToken(token, TokenSource.HEADER)


def authorizer(**overrides: object) -> MercureAuthorizer:
    options: dict[str, object] = {
        "publisher_key": JwtKey(SUITE_SECRET, ("HS256",)),
        "subscriber_key": None,
        "policy": AccessTokenPolicy(frozenset({HUB})),
        "base_url": HUB,
        "anonymous": True,
    }
    options.update(overrides)
    return MercureAuthorizer(**options)  # type: ignore[arg-type]


def legacy_token(claims: dict[str, object], secret: str = SUITE_SECRET, **headers: object) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers=headers or None)


def access_token(
    details: list[object] | None = None, secret: str = SUITE_SECRET, algorithm: str = "HS256", **claims: object
) -> str:
    payload: dict[str, object] = {"aud": HUB, "iss": ISSUER, "exp": FAR_FUTURE}
    if details is not None:
        payload["authorization_details"] = details
    payload.update(claims)
    payload = {key: value for key, value in payload.items() if value is not None}
    return jwt.encode(payload, secret, algorithm=algorithm, headers={"typ": "at+jwt"})


def detail(actions: list[str], *matchers: dict[str, str], **extra: object) -> dict[str, object]:
    return {"type": DETAIL, "actions": actions, "topics": list(matchers), **extra}


def expect_invalid(call: object) -> MercureUnauthorized:
    with pytest.raises(MercureUnauthorized) as caught:
        assert callable(call)
        call()
    assert caught.value.status == 401
    assert caught.value.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    return caught.value


# -- where the token comes from -----------------------------------------------------------


def test_the_header_wins_over_the_query_and_the_cookies() -> None:
    cookies = {COOKIE: "c1", LEGACY_COOKIE: "c0"}
    assert select_token("Bearer h", "q", cookies) == PresentedToken("h", TokenSource.HEADER)
    assert select_token(None, "q", cookies) == PresentedToken("q", TokenSource.QUERY)
    assert select_token(None, None, cookies) == PresentedToken("c1", TokenSource.COOKIE)
    assert select_token(None, None, {LEGACY_COOKIE: "c0"}) == PresentedToken("c0", TokenSource.COOKIE)
    assert select_token(None, None, {}) is None


def test_a_bearer_header_is_present_even_when_its_token_is_empty() -> None:
    """A present-but-bad token is refused later; it never becomes 'no token'."""
    assert select_token("Bearer ", "q") == PresentedToken("", TokenSource.HEADER)
    assert select_token("bearer   t  ") == PresentedToken("t", TokenSource.HEADER)


def test_other_schemes_and_empty_values_are_passed_over() -> None:
    assert select_token("Basic dXNlcjpwYXNz", "q") == PresentedToken("q", TokenSource.QUERY)
    assert select_token(None, "", {COOKIE: "", LEGACY_COOKIE: "c0"}) == PresentedToken("c0", TokenSource.COOKIE)


def test_the_query_token_is_ignored_when_not_allowed() -> None:
    assert select_token(None, "q", {COOKIE: "c"}, allow_query=False) == PresentedToken("c", TokenSource.COOKIE)


def test_a_presented_token_does_not_show_itself_in_reprs() -> None:
    assert "secret-value" not in repr(PresentedToken("secret-value", TokenSource.COOKIE))


# -- RFC 6750 challenges --------------------------------------------------------------------


def test_bearer_challenges() -> None:
    assert bearer_challenge() == "Bearer"
    assert bearer_challenge(resource_metadata="https://h/m") == 'Bearer resource_metadata="https://h/m"'
    assert bearer_challenge("invalid_token", "bad") == 'Bearer error="invalid_token", error_description="bad"'
    assert bearer_challenge("insufficient_scope", scope="a b") == 'Bearer error="insufficient_scope", scope="a b"'
    assert bearer_challenge(None, "ignored without an error") == "Bearer"


def test_a_challenge_drops_characters_rfc_6750_forbids() -> None:
    value = bearer_challenge("invalid_token", 'say "hi"\\\r\nX-Injected: 1\u00e9')
    assert value == 'Bearer error="invalid_token", error_description="say hiX-Injected: 1"'


def test_error_classes_carry_status_and_challenge() -> None:
    missing = MercureUnauthorized("no token", error=None)
    assert (missing.status, missing.headers["WWW-Authenticate"]) == (401, "Bearer")
    forbidden = MercureForbidden("nope")
    assert forbidden.status == 403
    assert forbidden.headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope", error_description="nope"'


# -- publishing ------------------------------------------------------------------------------


def test_the_conformance_suite_token_may_publish_anywhere() -> None:
    grant = authorizer().authorize_publish(header(SUITE_TOKEN), ("a", "https://example.net/foo/x"))
    assert grant.protocol is Protocol.DRAFT_07
    assert grant.subscribe.match_all
    assert grant.expires_at is None


def test_publishing_without_a_token_is_401_with_a_bare_challenge() -> None:
    with pytest.raises(MercureUnauthorized) as caught:
        authorizer().authorize_publish(None, ("a",))
    assert caught.value.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        SUITE_TOKEN[:-2] + "xx",
        legacy_token({"mercure": {"publish": ["*"]}}, secret="another-secret-0123456789abcdef-0123"),
        legacy_token({"mercure": {"publish": ["*"]}, "exp": int(time.time()) - 2}),
        legacy_token({"mercure": {"publish": ["*"]}, "nbf": int(time.time()) + 600}),
        legacy_token({"mercure": {"publish": "*"}}),
        legacy_token({"mercure": ["*"]}),
        legacy_token({"mercure": {"publish": ["bad\nselector"]}}),
        "\u00e9" + SUITE_TOKEN,
        SUITE_TOKEN + "a" * 20_000,
    ],
)
def test_a_bad_publisher_token_is_401_invalid_token(token: str) -> None:
    expect_invalid(lambda: authorizer().authorize_publish(header(token), ("a",)))


def test_a_token_expired_within_the_leeway_is_still_refused() -> None:
    token = legacy_token({"mercure": {"publish": ["*"]}, "exp": int(time.time()) - 1})
    expect_invalid(lambda: authorizer().authorize_publish(header(token), ("a",)))


def test_a_valid_token_without_publish_rights_is_403() -> None:
    for claims in ({}, {"mercure": {"subscribe": ["*"]}}, {"mercure": {"publish": []}}):
        with pytest.raises(MercureForbidden):
            authorizer().authorize_publish(header(legacy_token(claims)), ("a",))


def test_every_topic_of_an_update_must_be_granted() -> None:
    token = header(legacy_token({"mercure": {"publish": ["https://example.com/books/{id}", "extra"]}}))
    auth = authorizer()
    assert auth.authorize_publish(token, ("https://example.com/books/1", "extra")).publish.has_patterns
    with pytest.raises(MercureForbidden, match="every topic"):
        auth.authorize_publish(token, ("https://example.com/books/1", "https://example.com/authors/1"))


def test_a_legacy_token_with_an_aud_is_not_refused_for_it() -> None:
    token = legacy_token({"mercure": {"publish": ["*"]}, "aud": "https://elsewhere.example"})
    assert authorizer().authorize_publish(header(token), ("a",)).protocol is Protocol.DRAFT_07


def test_legacy_tokens_can_be_switched_off() -> None:
    expect_invalid(lambda: authorizer(accept_legacy_tokens=False).authorize_publish(header(SUITE_TOKEN), ("a",)))


# -- subscribing ------------------------------------------------------------------------------


def test_no_token_is_anonymous_only_when_allowed() -> None:
    assert authorizer(anonymous=True).authorize_subscriber(None) is None
    with pytest.raises(MercureUnauthorized) as caught:
        authorizer(anonymous=False).authorize_subscriber(None)
    assert caught.value.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "token",
    ["", "garbage", legacy_token({"mercure": {"subscribe": ["*"]}, "exp": int(time.time()) - 30})],
)
def test_a_present_but_bad_subscriber_token_never_falls_back_to_anonymous(token: str) -> None:
    expect_invalid(lambda: authorizer(anonymous=True).authorize_subscriber(PresentedToken(token, TokenSource.COOKIE)))


def test_a_subscriber_grant_carries_selectors_payload_and_expiry() -> None:
    exp = int(time.time()) + 600
    claims = {"mercure": {"subscribe": ["https://example.com/users/{id}"], "payload": {"user": 7}}, "exp": exp}
    grant = authorizer().authorize_subscriber(header(legacy_token(claims)))
    assert grant is not None
    assert grant.subscribe.matches("https://example.com/users/7")
    assert not grant.subscribe.matches("https://example.com/admins/7")
    assert grant.payload == {"user": 7}
    assert grant.expires_at == exp


def test_a_separate_subscriber_key_is_used_for_subscribers_only() -> None:
    auth = authorizer(subscriber_key=JwtKey(SUBSCRIBER_SECRET, ("HS256",)))
    expect_invalid(lambda: auth.authorize_subscriber(header(SUITE_TOKEN)))
    mine = legacy_token({"mercure": {"subscribe": ["*"]}}, secret=SUBSCRIBER_SECRET)
    assert auth.authorize_subscriber(header(mine)) is not None
    expect_invalid(
        lambda: auth.authorize_publish(header(legacy_token({"mercure": {"publish": ["*"]}}, SUBSCRIBER_SECRET)), ("a",))
    )


# -- 1.0 access tokens -------------------------------------------------------------------------


def test_the_1_0_conformance_token_shape_is_accepted() -> None:
    token = access_token([detail(["publish"], {"match": "*"}), detail(["subscribe"], {"match": "*"})])
    grant = authorizer().authorize_publish(header(token), ("anything",))
    assert grant.protocol is Protocol.V1
    assert grant.subscribe.match_all
    # a far exp is capped (a stream's timer must stay a sane float)
    assert grant.expires_at is not None
    assert time.time() + 365 * 86400 < grant.expires_at <= time.time() + MAX_GRANT_SECONDS


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "https://other.example/.well-known/mercure"},
        {"aud": None},
        {"iss": None},
        {"exp": None},
        {"exp": int(time.time()) - 1},
        {"nbf": int(time.time()) + 600},
    ],
)
def test_rfc_9068_claims_are_enforced(claims: dict[str, object]) -> None:
    token = access_token([detail(["publish"], {"match": "*"})], **claims)
    expect_invalid(lambda: authorizer().authorize_publish(header(token), ("a",)))


def test_the_issuer_is_checked_when_issuers_are_configured() -> None:
    token = header(access_token([detail(["publish"], {"match": "*"})], iss="https://evil.example"))
    assert authorizer().authorize_publish(token, ("a",)) is not None  # no issuers: self-issued
    trusted = authorizer(policy=AccessTokenPolicy(frozenset({HUB}), frozenset({ISSUER})))
    expect_invalid(lambda: trusted.authorize_publish(token, ("a",)))
    good = header(access_token([detail(["publish"], {"match": "*"})]))
    assert trusted.authorize_publish(good, ("a",)) is not None


def test_an_audience_list_containing_the_hub_is_accepted() -> None:
    token = access_token([detail(["publish"], {"match": "*"})], aud=["https://other.example", HUB])
    assert authorizer().authorize_publish(header(token), ("a",)) is not None


def test_the_long_media_type_is_an_access_token_too() -> None:
    token = jwt.encode(
        {"aud": HUB, "iss": ISSUER, "exp": FAR_FUTURE}, SUITE_SECRET, headers={"typ": "application/at+jwt"}
    )
    assert authorizer().verify(token, JwtKey(SUITE_SECRET, ("HS256",))).protocol is Protocol.V1


def test_authorization_details_grant_by_action_and_match_type() -> None:
    token = access_token(
        [
            detail(["subscribe"], {"match": "https://example.com/books/:id", "match_type": "urlpattern"}),
            detail(["publish", "delete"], {"match": "https://example.com/books/1"}),  # unknown action: ignored
            {"type": "https://other.example/detail", "topics": "anything"},  # another type: ignored
        ]
    )
    grant = authorizer().verify(token, JwtKey(SUITE_SECRET, ("HS256",)))
    assert grant.subscribe.matches("https://example.com/books/42")
    assert not grant.subscribe.matches("https://example.com/books/42/reviews")
    assert grant.may_publish(("https://example.com/books/1",))
    assert not grant.may_publish(("https://example.com/books/2",))


def test_the_first_subscribe_payload_is_kept() -> None:
    token = access_token(
        [detail(["subscribe"], {"match": "a"}, payload={"n": 1}), detail(["subscribe"], {"match": "b"}, payload=2)]
    )
    assert authorizer().verify(token, JwtKey(SUITE_SECRET, ("HS256",))).payload == {"n": 1}


@pytest.mark.parametrize(
    "details",
    [
        "not a list",
        ["not an object"],
        [detail([], {"match": "a"})],
        [detail(["publish"])],
        [detail(["publish"], {"match": ""})],
        [{"type": DETAIL, "actions": "publish", "topics": [{"match": "a"}]}],
        [detail(["publish"], {"match": "a", "match_type": "regex"})],
        [detail(["publish"], {"match": "https://x/(a|b", "match_type": "urlpattern"})],
        [detail(["publish"], {"match": "*"}), detail(["subscribe"], {"nomatch": "a"})],
        [detail(["publish"], {"match": "a"})] * 101,
    ],
)
def test_a_malformed_detail_refuses_the_whole_token(details: object) -> None:
    token = access_token(details)  # type: ignore[arg-type]
    expect_invalid(lambda: authorizer().authorize_publish(header(token), ("a",)))


def test_an_access_token_without_details_grants_nothing() -> None:
    with pytest.raises(MercureForbidden):
        authorizer().authorize_publish(header(access_token()), ("a",))
    grant = authorizer().authorize_subscriber(header(access_token()))
    assert grant is not None and grant.subscribe.is_empty


# -- keys and algorithms ----------------------------------------------------------------------------


def test_algorithms_come_from_the_configuration_only() -> None:
    hs512 = jwt.encode({"mercure": {"publish": ["*"]}}, SUITE_SECRET + "-" * 40, algorithm="HS512")
    expect_invalid(
        lambda: authorizer(publisher_key=JwtKey(SUITE_SECRET + "-" * 40, ("HS256",))).authorize_publish(
            header(hs512), ("a",)
        )
    )
    unsigned = jwt.encode({"mercure": {"publish": ["*"]}}, None, algorithm="none")
    expect_invalid(lambda: authorizer().authorize_publish(header(unsigned), ("a",)))
    with pytest.raises(ValueError, match="none"):
        JwtKey(SUITE_SECRET, ("HS256", "none"))
    with pytest.raises(ValueError):
        JwtKey(SUITE_SECRET, ())


def hs256_signed_with(secret: bytes, claims: dict[str, object]) -> str:
    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    signing_input = part({"alg": "HS256", "typ": "JWT"}) + "." + part(claims)
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def rsa_pair(tmp_path: Path) -> tuple[rsa.RSAPrivateKey, Path]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    path = tmp_path / "publisher.pem"
    path.write_bytes(pem)
    return private, path


def test_rs256_with_a_public_key_file_and_no_algorithm_confusion(tmp_path: Path) -> None:
    private, path = rsa_pair(tmp_path)
    key = JwtKey.from_config(MercureJwtConfig(public_key_file=str(path), algorithms=["RS256"]))
    assert key is not None and key.key.startswith("-----BEGIN PUBLIC KEY-----")
    signed = jwt.encode({"mercure": {"publish": ["*"]}}, private, algorithm="RS256")
    assert authorizer(publisher_key=key).authorize_publish(header(signed), ("a",)).protocol is Protocol.DRAFT_07
    # The public key used as an HMAC secret (algorithm confusion). The config refuses HS*
    # beside a key file; should a key reach us anyway, PyJWT refuses PEM keys for HMAC.
    auth = authorizer(publisher_key=JwtKey(key.key, ("RS256", "HS256")))
    forged = hs256_signed_with(path.read_bytes(), {"mercure": {"publish": ["*"]}})
    expect_invalid(lambda: auth.authorize_publish(header(forged), ("a",)))


def test_a_jwt_section_without_a_key_gives_no_key() -> None:
    assert JwtKey.from_config(MercureJwtConfig()) is None
    assert JwtKey.from_config(MercureJwtConfig(secret=SUITE_SECRET)) == JwtKey(SUITE_SECRET, ("HS256",))


def test_an_access_token_policy_needs_an_audience() -> None:
    with pytest.raises(ValueError, match="resource identifier"):
        AccessTokenPolicy(frozenset())


def test_refused_tokens_are_logged_without_the_token(caplog: pytest.LogCaptureFixture) -> None:
    token = SUITE_TOKEN[:-4] + "AAAA"
    with caplog.at_level(logging.INFO, logger="sse_hub.mercure.auth"):
        expect_invalid(lambda: authorizer().authorize_publish(header(token), ("a",)))
    assert "mercure token refused" in caplog.text
    assert token not in caplog.text and token.split(".")[2] not in caplog.text
