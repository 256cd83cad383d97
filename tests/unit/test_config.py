"""Configuration: the example file, env overrides, precedence, and errors that name the key,
in-process (``sse-hub check-config`` as a real process: tests/e2e/test_config.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from sse_hub.config.settings import ConfigError, Settings, StreamConfig, load_settings
from tests.support.paths import ROOT

EXAMPLE = ROOT / "config.example.yaml"
CLASSIC_STREAMS = [
    StreamConfig(path="/api/events", channels=["events"]),
    StreamConfig(path="/api/stocks", channels=["stocks"]),
    StreamConfig(path="/api/news", channels=["news"]),
]


def settings_keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every leaf key of a settings model, dotted; items of a list of sections as ``0``."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        key = f"{prefix}{name}"
        if get_origin(annotation) is list:
            (item,) = get_args(annotation)
            if isinstance(item, type) and issubclass(item, BaseModel):
                yield from settings_keys(item, f"{key}.0.")
                continue
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from settings_keys(annotation, f"{key}.")
        else:
            yield key


def lookup(raw: Any, dotted: str) -> Any:
    node = raw
    for part in dotted.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(*args: Any, **kwargs: Any) -> str:
    kwargs.setdefault("environ", {})
    with pytest.raises(ConfigError) as caught:
        load_settings(*args, **kwargs)
    return str(caught.value)


# -- the example file -------------------------------------------------------------------


def test_example_file_loads_and_holds_the_defaults_apart_from_streams() -> None:
    settings = load_settings(EXAMPLE, environ={})
    assert settings.streams == CLASSIC_STREAMS
    assert settings.model_copy(update={"streams": Settings().streams}) == Settings()


def test_code_default_for_streams_is_only_api_events() -> None:
    assert Settings().streams == CLASSIC_STREAMS[:1]


def test_every_settings_key_is_written_in_the_example_file() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    missing = []
    for key in settings_keys(Settings):
        try:
            lookup(raw, key)
        except (KeyError, IndexError, TypeError):
            missing.append(key)
    assert missing == [], f"document these keys in config.example.yaml: {missing}"


def test_every_example_key_line_carries_a_comment() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    undocumented = []
    for key in settings_keys(Settings):
        leaf = key.rsplit(".", 1)[-1]
        if key.startswith("streams."):
            continue  # written inline: {path: ..., channels: [...]}  # comment
        if not re.search(rf"^\s*{leaf}:[^#\n]*#\s*\S", text, re.MULTILINE):
            undocumented.append(key)
    assert undocumented == []
    stream_lines = [line for line in text.splitlines() if line.lstrip().startswith("- {path:")]
    assert len(stream_lines) == 3
    assert all("#" in line for line in stream_lines)


def test_example_file_says_the_code_default_streams_differ() -> None:
    comments = " ".join(line for line in EXAMPLE.read_text(encoding="utf-8").splitlines() if line.startswith("#"))
    assert "default" in comments and "/api/events" in comments and "/api/stocks" in comments


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, ""), environ={}) == Settings()
    assert load_settings(write(tmp_path, "# nothing\n"), environ={}) == Settings()


# -- environment overrides and precedence ----------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "key", "expected"),
    [
        ("SSE_HUB_SERVER__PORT", "9000", "server.port", 9000),
        ("SSE_HUB_SERVER__SHUTDOWN_TIMEOUT", "2.5", "server.shutdown_timeout", 2.5),
        ("SSE_HUB_SSE__HEARTBEAT_SECONDS", "0.3", "sse.heartbeat_seconds", 0.3),
        ("SSE_HUB_LIMITS__MAX_BATCH", "7", "limits.max_batch", 7),
        ("SSE_HUB_HISTORY__SIZE", "0", "history.size", 0),
        ("SSE_HUB_DEMO_PAGE", "false", "demo_page", False),
        ("SSE_HUB_DEMO_PAGE", "true", "demo_page", True),
        ("SSE_HUB_DEMO_PAGE", "0", "demo_page", False),
        ("SSE_HUB_BROKER__BACKEND", "redis", "broker.backend", "redis"),
        ("SSE_HUB_SERVER__HOST", "::", "server.host", "::"),
        (
            "SSE_HUB_SERVER__CORS_ORIGINS",
            "[https://a.example, https://b.example]",
            "server.cors_origins",
            ["https://a.example", "https://b.example"],
        ),
        ("SSE_HUB_SERVER__CORS_ORIGINS", '["*"]', "server.cors_origins", ["*"]),
        (
            "SSE_HUB_SERVER__TRUSTED_PROXIES",
            "10.0.0.0/8,127.0.0.1",
            "server.trusted_proxies",
            ["10.0.0.0/8", "127.0.0.1"],
        ),
        ("SSE_HUB_AUTH__PUBLISH_TOKENS", "[a, b]", "auth.publish_tokens", ["a", "b"]),
        ("SSE_HUB_AUTH__PUBLISH_TOKENS", "", "auth.publish_tokens", []),
        (
            "SSE_HUB_AUTH__SUBSCRIBER_JWT__ALGORITHMS",
            "[HS256, HS512]",
            "auth.subscriber_jwt.algorithms",
            ["HS256", "HS512"],
        ),
        # String keys are taken verbatim: no YAML comments, mappings, numbers or booleans.
        ("SSE_HUB_AUTH__SUBSCRIBER_JWT__SECRET", "s3cret #1: yes", "auth.subscriber_jwt.secret", "s3cret #1: yes"),
        ("SSE_HUB_AUTH__SUBSCRIBER_JWT__SECRET", "12345", "auth.subscriber_jwt.secret", "12345"),
        ("SSE_HUB_AUTH__SUBSCRIBER_JWT__SECRET", "yes", "auth.subscriber_jwt.secret", "yes"),
        ("SSE_HUB_AUTH__SUBSCRIBER_JWT__SECRET", "", "auth.subscriber_jwt.secret", None),
        ("SSE_HUB_BROKER__PREFIX", "2024", "broker.prefix", "2024"),
        # An optional section (null by default) reads its keys' types all the same.
        ("SSE_HUB_MERCURE__SUBSCRIBER_JWT__SECRET", "12345", "mercure.subscriber_jwt.secret", "12345"),
        ("SSE_HUB_MERCURE__SUBSCRIBER_JWT__SECRET", "k#1: x", "mercure.subscriber_jwt.secret", "k#1: x"),
        (
            "SSE_HUB_MERCURE__SUBSCRIBER_JWT__ALGORITHMS",
            "HS256,HS512",
            "mercure.subscriber_jwt.algorithms",
            ["HS256", "HS512"],
        ),
        ("SSE_HUB_BROKER__REDIS_URL", "redis://h:6380/2", "broker.redis_url", "redis://h:6380/2"),
        ("SSE_HUB_LOG__LEVEL", "debug", "log.level", "debug"),
        (
            "SSE_HUB_STREAMS",
            "[{path: /live, channels: [a, b]}]",
            "streams",
            [{"path": "/live", "channels": ["a", "b"]}],
        ),
    ],
)
def test_env_overrides_set_typed_values(name: str, value: str, key: str, expected: object) -> None:
    settings = load_settings(environ={name: value})
    assert lookup(settings.model_dump(), key) == expected


def test_env_override_changes_one_key_and_keeps_the_file_section(tmp_path: Path) -> None:
    path = write(tmp_path, "server: {host: 127.0.0.2, port: 1111}\n")
    settings = load_settings(path, environ={"SSE_HUB_SERVER__PORT": "2222"})
    assert (settings.server.host, settings.server.port) == ("127.0.0.2", 2222)


def test_file_then_env_then_command_line(tmp_path: Path) -> None:
    path = write(tmp_path, "server: {port: 1111}\nsse: {retry_ms: 10}\n")
    env = {"SSE_HUB_SERVER__PORT": "2222", "SSE_HUB_SSE__RETRY_MS": "20"}
    assert load_settings(path, environ={}).server.port == 1111
    assert load_settings(path, environ=env).server.port == 2222
    both = load_settings(path, environ=env, overrides={"server.port": 3333, "server.host": None})
    assert (both.server.port, both.server.host, both.sse.retry_ms) == (3333, "0.0.0.0", 20)


def test_env_override_fills_a_section_left_empty_in_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n")
    assert load_settings(path, environ={"SSE_HUB_SERVER__PORT": "4444"}).server.port == 4444


def test_sse_hub_config_names_the_file_and_config_argument_wins(tmp_path: Path) -> None:
    from_env = write(tmp_path, "server: {port: 1111}\n", "env.yaml")
    from_arg = write(tmp_path, "server: {port: 2222}\n", "arg.yaml")
    assert load_settings(environ={"SSE_HUB_CONFIG": str(from_env)}).server.port == 1111
    assert load_settings(from_arg, environ={"SSE_HUB_CONFIG": str(from_env)}).server.port == 2222


# -- errors name the key ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("server: {port: 70000}", "server.port: "),
        ("server: {port: abc}", "server.port: "),
        ("server: {shutdown_timeout: 0}", "server.shutdown_timeout: "),
        ("limits: {max_batch: 0}", "limits.max_batch: "),
        ("limits: {client_buffer_bytes: lots}", "limits.client_buffer_bytes: "),
        ("sse: {heartbeat_seconds: -1}", "sse.heartbeat_seconds: "),
        ("sse: {retry_ms: 1.5}", "sse.retry_ms: "),
        ("broker: {backend: kafka}", "broker.backend: "),
        ("log: {level: loud}", "log.level: "),
        ("log: {format: xml}", "log.format: "),
        ("demo_page: maybe", "demo_page: "),
        ("streams: [{path: nope, channels: [a]}]", "streams.0.path: "),
        ("streams: [{path: /x, channels: [a]}, {path: '/e/{c}', channels: [a]}]", "streams.1.path: "),
        ("streams: [{path: /x, channels: ['bad name']}]", "streams.0.channels: "),
        ("streams: [{path: /x, channels: []}]", "streams.0.channels: "),
        ("streams: [{path: /x}]", "streams.0.channels: Field required"),
        ("server: {prot: 8080}", "server.prot: unknown key (did you mean 'port'?)"),
        ("servr: {port: 8080}", "servr: unknown key (did you mean 'server'?)"),
        ("streams: [{path: /x, channels: [a], chanels: [b]}]", "streams.0.chanels: unknown key"),
        ("auth: {subscriber_jwt: {secrett: x}}", "auth.subscriber_jwt.secrett: unknown key"),
        ("server: 8080", "server: "),
    ],
)
def test_bad_file_values_raise_config_error_naming_the_dotted_key(tmp_path: Path, text: str, expected: str) -> None:
    message = load_error(write(tmp_path, text + "\n"))
    assert expected in message


def test_every_bad_key_is_reported_at_once(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "server: {port: -1, prot: 1}\nlimits: {max_batch: 0}\n"))
    assert "server.port: " in message and "server.prot: unknown key" in message and "limits.max_batch: " in message


def test_bad_value_message_shows_what_was_given(tmp_path: Path) -> None:
    assert "(got 70000)" in load_error(write(tmp_path, "server: {port: 70000}\n"))


def test_bad_auth_value_message_does_not_echo_the_secret(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "auth: {publish_tokens: [918273645], subscriber_jwt: {secret: 564738291}}\n"))
    assert "auth.publish_tokens.0: " in message and "auth.subscriber_jwt.secret: " in message
    assert "918273645" not in message and "564738291" not in message


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"SSE_HUB_SERVER__PORT": "abc"}, "server.port (from SSE_HUB_SERVER__PORT): "),
        ({"SSE_HUB_LIMITS__MAX_BATCH": "-1"}, "limits.max_batch (from SSE_HUB_LIMITS__MAX_BATCH): "),
        ({"SSE_HUB_SERVER__PROT": "1"}, "server.prot (from SSE_HUB_SERVER__PROT): unknown key"),
        ({"SSE_HUB_SERVR__PORT": "1"}, "servr (from SSE_HUB_SERVR__PORT): unknown key"),
        ({"SSE_HUB_DEMO_PAGE": "perhaps"}, "demo_page (from SSE_HUB_DEMO_PAGE): "),
        ({"SSE_HUB_SERVER__CORS_ORIGINS": "[a, [b"}, "server.cors_origins (from SSE_HUB_SERVER__CORS_ORIGINS): "),
        ({"SSE_HUB_STREAMS": "[{path: x, channels: [a]}]"}, "streams.0.path (from SSE_HUB_STREAMS): "),
        ({"SSE_HUB_SERVER": "5", "SSE_HUB_SERVER__PORT": "5"}, "server.port (from SSE_HUB_SERVER__PORT): "),
    ],
)
def test_bad_env_values_name_the_key_and_the_variable(environ: dict[str, str], expected: str) -> None:
    assert expected in load_error(environ=environ)


def test_bad_command_line_value_names_the_key() -> None:
    assert "server.port (from the command line): " in load_error(overrides={"server.port": 99999})


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    message = load_error(tmp_path / "absent.yaml")
    assert message.startswith("cannot read config file ") and "absent.yaml" in message and "No such file" in message


def test_directory_instead_of_file_is_a_clear_error(tmp_path: Path) -> None:
    assert load_error(tmp_path).startswith("cannot read config file ")


def test_invalid_yaml_is_a_clear_error_with_its_position(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "server:\n  port: [8080\n"))
    assert "is not valid YAML" in message and "line" in message


def test_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"server: {host: caf\xe9}\n")
    assert "is not UTF-8 text" in load_error(path)


@pytest.mark.parametrize("text", ["- server\n", "just a string\n", "42\n"])
def test_file_that_is_not_a_mapping_is_a_clear_error(tmp_path: Path, text: str) -> None:
    assert "must hold a mapping of sections" in load_error(write(tmp_path, text))
