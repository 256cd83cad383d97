"""Configuration beside Kubernetes and checks at load time: service-link variables are
skipped with a warning, and bad proxies, JWT keys and algorithms, and Redis URLs stop
``check-config`` and ``serve`` with exit 2 and the key named, never echoing a secret
(both commands as real processes: tests/e2e/test_config.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from sse_hub.config.settings import ConfigError, Settings, load_settings, service_link_variables
from tests.support.kubelet import KUBELET, KUBELET_NEIGHBOURS, KUBELET_SSE_HUB


def load_error(*args: object, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(*args, environ=environ or {})  # type: ignore[arg-type]
    return str(caught.value)


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- Kubernetes service links ------------------------------------------------------------


@pytest.mark.parametrize("links", [KUBELET_SSE_HUB, KUBELET_NEIGHBOURS, KUBELET], ids=["sse-hub", "neighbours", "all"])
def test_the_kubelets_service_link_variables_are_skipped(links: dict[str, str]) -> None:
    assert load_settings(environ=links) == Settings()
    assert service_link_variables(links) == sorted(links)


def test_settings_beside_service_links_still_apply() -> None:
    environ = {**KUBELET, "SSE_HUB_SERVER__PORT": "9000", "SSE_HUB_BROKER__BACKEND": "redis"}
    settings = load_settings(environ=environ)
    assert (settings.server.port, settings.broker.backend) == (9000, "redis")
    assert service_link_variables(environ) == sorted(KUBELET)


def test_a_misspelt_key_beside_service_links_is_still_refused_by_name() -> None:
    message = load_error(environ={**KUBELET, "SSE_HUB_BROKER__BACKND": "redis"})
    assert "broker.backnd (from SSE_HUB_BROKER__BACKND): unknown key (did you mean 'backend'?)" in message
    assert "SSE_HUB_PORT" not in message and "SSE_HUB_REDIS" not in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SSE_HUB_SERVER_PORT", "9000"),  # SSE_HUB_SERVER__PORT with one underscore: a number, not a URL
        ("SSE_HUB_PORT", "9000"),
        ("SSE_HUB_PORT", "http://10.0.0.1:8080"),
        ("SSE_HUB_PORT", "tcp://redis:8080"),  # the kubelet writes the ClusterIP, never a name
        ("SSE_HUB_SERVICE_HOST", "sse-hub.default.svc"),
        ("SSE_HUB_SERVICE_PORT", "http"),
        ("SSE_HUB_PORT_8080_TCP", "tcp://10.0.0.1:9090"),
        ("SSE_HUB_PORT_8080_TCP", "udp://10.0.0.1:8080"),
        ("SSE_HUB_PORT_8080_TCP_PORT", "9090"),
        ("SSE_HUB_PORT_8080_TCP_PROTO", "udp"),
        ("SSE_HUB_PORT_8080_HTTP", "tcp://10.0.0.1:8080"),
        ("SSE_HUB_SERVER__SERVICE_HOST", "10.0.0.1"),  # a double underscore is a setting's name
        ("SSE_HUB_service_host", "10.0.0.1"),
    ],
)
def test_names_or_values_off_the_kubelets_shape_are_unknown_keys(name: str, value: str) -> None:
    assert service_link_variables({name: value}) == []
    assert f"(from {name}): unknown key" in load_error(environ={name: value})


def test_a_service_link_blanked_in_the_pod_spec_is_skipped_too() -> None:
    assert load_settings(environ={"SSE_HUB_PORT": "", "SSE_HUB_SERVICE_PORT": ""}) == Settings()


# -- keys for the JWT checks ---------------------------------------------------------------


def pem(private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Paths of PEM public keys by kind: rsa, ec, ed25519; garbage and latin1 are not keys."""
    directory = tmp_path_factory.mktemp("jwt-check-keys")
    files = {
        "rsa": pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "ec": pem(ec.generate_private_key(ec.SECP256R1())),
        "ed25519": pem(ed25519.Ed25519PrivateKey.generate()),
        "garbage": b"-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
        "latin1": b"caf\xe9\n",
    }
    for kind, content in files.items():
        (directory / f"{kind}.pem").write_bytes(content)
    return {kind: str(directory / f"{kind}.pem") for kind in files}


JWT_SECTIONS = ["auth.subscriber_jwt", "mercure.publisher_jwt", "mercure.subscriber_jwt"]


def jwt_yaml(section: str, **values: object) -> str:
    top, sub = section.split(".")
    return json.dumps({top: {sub: values}})  # JSON is YAML


# -- checks at load time: trusted_proxies ------------------------------------------------


@pytest.mark.parametrize("entry", ["10.0.0.300", "10.0.0.0/33", "nginx", "", "fd00::/129", "10.0.0.1-10.0.0.9"])
def test_a_bad_trusted_proxy_is_refused_naming_the_entry(tmp_path: Path, entry: str) -> None:
    message = load_error(write(tmp_path, json.dumps({"server": {"trusted_proxies": ["127.0.0.1", entry]}})))
    assert f"server.trusted_proxies.1: Value error, not an IP address or CIDR (got {entry!r})" in message


def test_a_bad_trusted_proxy_from_the_environment_names_the_variable() -> None:
    message = load_error(environ={"SSE_HUB_SERVER__TRUSTED_PROXIES": "10.0.0.0/8,bogus"})
    assert "server.trusted_proxies.1 (from SSE_HUB_SERVER__TRUSTED_PROXIES): " in message


def test_good_trusted_proxies_load_as_written(tmp_path: Path) -> None:
    entries = ["127.0.0.1", "10.0.0.0/8", "10.1.2.3/8", "::1", "fd00::/8"]
    settings = load_settings(write(tmp_path, json.dumps({"server": {"trusted_proxies": entries}})), environ={})
    assert settings.server.trusted_proxies == entries


# -- checks at load time: JWT keys and algorithms ----------------------------------------


@pytest.mark.parametrize("section", JWT_SECTIONS)
def test_a_missing_public_key_file_is_refused(tmp_path: Path, section: str) -> None:
    missing = tmp_path / "absent.pem"
    message = load_error(write(tmp_path, jwt_yaml(section, public_key_file=str(missing), algorithms=["RS256"])))
    assert f"{section}.public_key_file: Value error, cannot read {missing}: No such file or directory" in message


@pytest.mark.parametrize("section", JWT_SECTIONS)
def test_an_unreadable_public_key_file_is_refused(tmp_path: Path, keys: dict[str, str], section: str) -> None:
    directory = load_error(write(tmp_path, jwt_yaml(section, public_key_file=str(tmp_path), algorithms=["RS256"])))
    assert f"{section}.public_key_file: Value error, cannot read {tmp_path}: Is a directory" in directory
    latin1 = load_error(write(tmp_path, jwt_yaml(section, public_key_file=keys["latin1"], algorithms=["RS256"])))
    assert f"{section}.public_key_file: Value error, {keys['latin1']} is not a PEM file" in latin1


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_a_file_that_holds_no_usable_key_is_refused(tmp_path: Path, keys: dict[str, str], algorithm: str) -> None:
    text = jwt_yaml("auth.subscriber_jwt", public_key_file=keys["garbage"], algorithms=[algorithm])
    message = load_error(write(tmp_path, text))
    assert f"auth.subscriber_jwt.algorithms: Value error, {algorithm} cannot use public_key_file " in message


@pytest.mark.parametrize(("algorithm", "kind"), [("ES256", "rsa"), ("RS256", "ec"), ("EdDSA", "rsa"), ("PS256", "ec")])
def test_a_key_of_the_wrong_kind_is_refused(tmp_path: Path, keys: dict[str, str], algorithm: str, kind: str) -> None:
    text = jwt_yaml("auth.subscriber_jwt", public_key_file=keys[kind], algorithms=[algorithm])
    assert f"{algorithm} cannot use public_key_file {keys[kind]}" in load_error(write(tmp_path, text))


@pytest.mark.parametrize("section", JWT_SECTIONS)
@pytest.mark.parametrize("algorithm", ["HS257", "rs256", "RSA256", "none", ""])
def test_an_algorithm_pyjwt_does_not_know_is_refused(tmp_path: Path, section: str, algorithm: str) -> None:
    message = load_error(write(tmp_path, jwt_yaml(section, secret="k" * 32, algorithms=["HS256", algorithm])))
    assert f"{section}.algorithms: Value error, " in message
    assert f"{algorithm!r} is not a JWT algorithm PyJWT supports" in message or "'none' would accept" in message


def test_an_unknown_algorithm_is_refused_even_with_no_key_set() -> None:
    assert "auth.subscriber_jwt.algorithms" in load_error(environ={"SSE_HUB_AUTH__SUBSCRIBER_JWT__ALGORITHMS": "HS265"})


def test_an_empty_algorithm_list_is_refused(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, jwt_yaml("auth.subscriber_jwt", secret="k" * 32, algorithms=[])))
    assert "auth.subscriber_jwt.algorithms: " in message


@pytest.mark.parametrize("section", JWT_SECTIONS)
@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_hmac_with_a_public_key_is_refused(tmp_path: Path, keys: dict[str, str], section: str, algorithm: str) -> None:
    text = jwt_yaml(section, public_key_file=keys["rsa"], algorithms=["RS256", algorithm])
    message = load_error(write(tmp_path, text))
    assert f"{section}.algorithms: Value error, {algorithm} verifies with a shared secret" in message


@pytest.mark.parametrize("section", JWT_SECTIONS)
@pytest.mark.parametrize("algorithm", ["RS256", "ES384", "PS512", "EdDSA", "ES256K"])
def test_a_public_key_algorithm_with_a_secret_is_refused(tmp_path: Path, section: str, algorithm: str) -> None:
    message = load_error(write(tmp_path, jwt_yaml(section, secret="s3cret-730194", algorithms=["HS256", algorithm])))
    assert f"{section}.algorithms: Value error, {algorithm} verifies with a public key" in message
    assert "s3cret-730194" not in message


def test_secret_and_public_key_file_together_are_refused(tmp_path: Path, keys: dict[str, str]) -> None:
    text = jwt_yaml("auth.subscriber_jwt", secret="s3cret-730194", public_key_file=keys["rsa"], algorithms=["RS256"])
    message = load_error(write(tmp_path, text))
    assert "auth.subscriber_jwt.public_key_file: Value error, set secret or public_key_file, not both" in message
    assert "s3cret-730194" not in message


@pytest.mark.parametrize("secret", ["", "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"])
def test_a_secret_pyjwt_refuses_as_an_hmac_key_is_refused(tmp_path: Path, secret: str) -> None:
    message = load_error(write(tmp_path, jwt_yaml("mercure.publisher_jwt", secret=secret)))
    assert "mercure.publisher_jwt.algorithms: Value error, HS256 cannot use secret: " in message
    assert "MFkw" not in message


@pytest.mark.parametrize(
    ("kind", "algorithms"),
    [("rsa", ["RS256", "RS512", "PS256"]), ("ec", ["ES256"]), ("ed25519", ["EdDSA"]), (None, ["HS256", "HS512"])],
)
def test_keys_that_fit_their_algorithms_load(
    tmp_path: Path, keys: dict[str, str], kind: str | None, algorithms: list[str]
) -> None:
    key = {"public_key_file": keys[kind]} if kind else {"secret": "k" * 32}
    for section in JWT_SECTIONS:
        settings = load_settings(write(tmp_path, jwt_yaml(section, **key, algorithms=algorithms)), environ={})
        top, sub = section.split(".")
        assert getattr(getattr(settings, top), sub).algorithms == algorithms


def test_a_mercure_secret_is_never_echoed(tmp_path: Path) -> None:
    text = json.dumps({"mercure": {"publisher_jwt": {"secret": 918273645}, "subscriber_jwt": {"secret": 564738291}}})
    message = load_error(write(tmp_path, text))
    assert "mercure.publisher_jwt.secret: " in message and "mercure.subscriber_jwt.secret: " in message
    assert "918273645" not in message and "564738291" not in message


# -- checks at load time: broker.redis_url -----------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "localhost:6379",
        "http://localhost:6379/0",
        "redis:/localhost",
        "redis://localhost:port/0",
        "redis://localhost:99999/0",
        "redis://localhost/0?socket_timeout=soon",
        "redis://[::1/0",
        "",
    ],
)
def test_a_redis_url_that_does_not_parse_is_refused(url: str) -> None:
    message = load_error(environ={"SSE_HUB_BROKER__BACKEND": "redis", "SSE_HUB_BROKER__REDIS_URL": url})
    assert "broker.redis_url (from SSE_HUB_BROKER__REDIS_URL): Value error, not a Redis URL redis-py can use" in message


@pytest.mark.parametrize("url", ["redis://:hunter2-4417@host:63790x/0", "redis://user:hunter2-4417", "hunter2-4417"])
def test_a_bad_redis_url_never_echoes_its_password(tmp_path: Path, url: str) -> None:
    message = load_error(write(tmp_path, json.dumps({"broker": {"backend": "redis", "redis_url": url}})))
    assert "broker.redis_url: " in message and "hunter2" not in message


@pytest.mark.parametrize("url", ["redis://localhost:6379/0", "rediss://u:p@redis.example:6380/2", "unix:///run/r.sock"])
def test_good_redis_urls_load(url: str) -> None:
    environ = {"SSE_HUB_BROKER__BACKEND": "redis", "SSE_HUB_BROKER__REDIS_URL": url}
    assert load_settings(environ=environ).broker.redis_url == url


def test_the_redis_url_is_not_checked_for_the_memory_broker() -> None:
    assert load_settings(environ={"SSE_HUB_BROKER__REDIS_URL": "unused"}).broker.redis_url == "unused"
