"""Settings: one YAML file, then ``SSE_HUB_<SECTION>__<KEY>`` environment overrides, then CLI flags.

Every key is optional and has the default written in ``config.example.yaml``. Unknown keys
and bad values raise ConfigError with a message that names the key (``server.port: ...``)
and, for overrides, where the value came from (``SSE_HUB_SERVER__PORT``), so a typo stops
start-up instead of being silently ignored.

How environment values are read, and which ``SSE_HUB_*`` variables are skipped as
Kubernetes service links, is ``config.env``'s job; ``service_link_variables`` names the
skipped ones so the CLI can warn once logging is set up.

Values a type cannot judge (``server.trusted_proxies``, JWT keys and algorithms,
``broker.redis_url``) are checked here too, by ``config.checks``, with the libraries that
will use them; those errors name the key like any other.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sse_hub.config import env as config_env
from sse_hub.config.checks import check_jwt_keys, check_proxy_entry, check_redis_url, read_public_key
from sse_hub.config.env import CONFIG_VARIABLE

# Used with fullmatch(): "$" would also match before a trailing newline.
CHANNEL_PATTERN = re.compile(r"[A-Za-z0-9_.:@{}-]{1,128}")

Port = Annotated[int, Field(ge=0, le=65535)]
Positive = Annotated[int, Field(ge=1)]
ProxyEntry = Annotated[str, AfterValidator(check_proxy_entry)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(Section):
    host: str = "0.0.0.0"
    port: Port = 8080
    shutdown_timeout: Annotated[float, Field(gt=0)] = 10
    cors_origins: list[str] = ["*"]
    trusted_proxies: list[ProxyEntry] = []
    # Seconds a client may take to send its request headers before the connection is dropped.
    request_header_timeout: Annotated[float, Field(gt=0)] = 10


class BrokerConfig(Section):
    backend: Literal["memory", "redis", "redis-cluster"] = "memory"
    redis_url: str = "redis://localhost:6379/0"
    # redis-cluster only. sharded: channels spread over every master, ids are per-channel
    # positions; one-slot: everything on one master, ids one integer sequence (docs/scaling.md).
    cluster_mode: Literal["sharded", "one-slot"] = "sharded"
    prefix: Annotated[str, Field(min_length=1)] = "sse-hub"
    # sharded only: replicas that must acknowledge a publish's writes before its 202 (WAIT).
    min_replicas_acked: Annotated[int, Field(ge=0)] = 0

    @field_validator("redis_url")
    @classmethod
    def _parsable_url(cls, url: str, info: ValidationInfo) -> str:
        # Checked only when used: a memory hub never connects.
        return check_redis_url(url) if info.data.get("backend") in ("redis", "redis-cluster") else url

    @field_validator("prefix")
    @classmethod
    def _one_hash_tag(cls, prefix: str, info: ValidationInfo) -> str:
        # redis-cluster wraps the prefix in {...}: a brace inside would change the tag.
        if info.data.get("backend") == "redis-cluster" and ("{" in prefix or "}" in prefix):
            raise ValueError("must not contain braces with backend redis-cluster (it becomes the hash tag)")
        return prefix


class HistoryConfig(Section):
    size: Annotated[int, Field(ge=0)] = 1000
    # A channel with no publish for this long loses its history (both brokers).
    ttl_seconds: Positive = 86_400
    # Memory broker: channels with history; past it the least recently published goes first.
    max_channels: Positive = 100_000
    # A channel that ended (a message with "final": true) keeps its final mark and history
    # this long, then is forgotten: it behaves like a channel that was never used.
    finished_ttl_seconds: Positive = 3600


class SseConfig(Section):
    retry_ms: Annotated[int, Field(ge=0, le=86_400_000)] = 3000
    heartbeat_seconds: Annotated[float, Field(gt=0)] = 15


class StreamConfig(Section):
    path: str
    channels: Annotated[list[str], Field(min_length=1)]

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, path: str) -> str:
        if not path.startswith("/") or "{" in path:
            raise ValueError("must start with / and hold no {placeholders}")
        return path

    @field_validator("channels")
    @classmethod
    def _valid_channels(cls, channels: list[str]) -> list[str]:
        for channel in channels:
            if not CHANNEL_PATTERN.fullmatch(channel):
                raise ValueError(f"invalid channel name {channel!r}")
        return channels


class LimitsConfig(Section):
    max_connections: Positive = 10_000
    max_connections_per_ip: Positive = 1000
    max_channels_per_connection: Positive = 64
    max_message_bytes: Positive = 65_536
    max_batch: Positive = 1000
    client_buffer_bytes: Positive = 1_048_576
    # A stream with bytes waiting that reads nothing for this long is closed as slow.
    stall_seconds: Annotated[float, Field(gt=0)] = 60
    # One-time tickets outstanding at once (per instance in memory, per cluster in Redis).
    max_tickets: Positive = 100_000
    # NDJSON publish streams (POST /broadcast, application/x-ndjson) open at once, per
    # instance, and how long one may stay silent before it ends with 408.
    max_publish_streams: Positive = 100
    publish_stream_idle_seconds: Annotated[float, Field(gt=0)] = 30


class JwtConfig(Section):
    """One verification key (an HMAC secret or a PEM public key file) and its algorithms."""

    secret: str | None = None
    public_key_file: str | None = None
    # Validated when left out too: the default HS256 must fit the key as well.
    algorithms: Annotated[list[str], Field(min_length=1, validate_default=True)] = ["HS256"]

    @field_validator("public_key_file")
    @classmethod
    def _readable_key(cls, path: str | None, info: ValidationInfo) -> str | None:
        if path is None:
            return None
        if info.data.get("secret") is not None:
            raise ValueError("set secret or public_key_file, not both: tokens are verified with one key")
        read_public_key(path)
        return path

    @field_validator("algorithms")
    @classmethod
    def _algorithms_fit_the_key(cls, algorithms: list[str], info: ValidationInfo) -> list[str]:
        if "secret" in info.data and "public_key_file" in info.data:  # else those keys were refused
            check_jwt_keys(algorithms, info.data["secret"], info.data["public_key_file"])
        return algorithms


class SubscriberJwtConfig(JwtConfig):
    pass


class AuthConfig(Section):
    publish_tokens: list[str] = []
    admin_tokens: list[str] = []
    subscriber_jwt: SubscriberJwtConfig = SubscriberJwtConfig()


class MercureJwtConfig(JwtConfig):
    pass


class MercureConfig(Section):
    enabled: bool = False
    publisher_jwt: MercureJwtConfig = MercureJwtConfig()
    # None: the same key as publisher_jwt.
    subscriber_jwt: MercureJwtConfig | None = None
    anonymous: bool = False
    # The hub's URL: URL Pattern base, reserved namespace, 1.0 access token audience.
    public_url: Annotated[str, Field(pattern=r"^https?://[^/?#\s]+/\S*$")] = "https://localhost/.well-known/mercure"
    # More accepted ``aud`` values of 1.0 access tokens.
    audiences: list[str] = []
    # Accepted ``iss`` of 1.0 access tokens; empty: any (self-issued tokens, the hub's key).
    issuers: list[str] = []
    # False: refuse draft-07 tokens (without ``typ: at+jwt``).
    accept_legacy_tokens: bool = True
    # Subscription events and the active-subscriptions API (docs/mercure.md, "Subscriptions").
    subscriptions: bool = False

    @model_validator(mode="after")
    def _publisher_key(self) -> MercureConfig:
        key = self.publisher_jwt
        if self.enabled and not (key.secret or key.public_key_file):
            raise ValueError(
                "enabled: true needs publisher_jwt.secret or publisher_jwt.public_key_file "
                "(SSE_HUB_MERCURE__PUBLISHER_JWT__SECRET)"
            )
        return self


class LogConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


class Settings(Section):
    server: ServerConfig = ServerConfig()
    broker: BrokerConfig = BrokerConfig()
    history: HistoryConfig = HistoryConfig()
    sse: SseConfig = SseConfig()
    streams: list[StreamConfig] = [StreamConfig(path="/api/events", channels=["events"])]
    limits: LimitsConfig = LimitsConfig()
    auth: AuthConfig = AuthConfig()
    demo_page: bool = True
    log: LogConfig = LogConfig()
    mercure: MercureConfig = MercureConfig()

    @property
    def sharded(self) -> bool:
        """Ids are per-channel positions (the sharded Redis Cluster broker)."""
        return self.broker.backend == "redis-cluster" and self.broker.cluster_mode == "sharded"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key."""


def load_settings(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Read the YAML file, apply env overrides, then ``overrides`` (dotted keys), validate."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_VARIABLE) or None
    raw = _read_yaml(Path(path)) if path else {}
    sources: dict[str, str] = {}
    for key, (name, value) in config_env.env_overrides(environ, Settings).items():
        _set_dotted(raw, key, value, name)
        sources[key] = name
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(raw, key, value, "the command line")
            sources[key] = "the command line"
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, sources)) from exc


def _read_yaml(path: Path) -> dict[str, object]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(loaded).__name__}")
    return loaded


def service_link_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """The ``SSE_HUB_*`` variables that ``load_settings`` skips as Kubernetes service links."""
    return config_env.service_link_variables(os.environ if environ is None else environ, Settings)


def _set_dotted(raw: dict[str, object], dotted: str, value: object, source: str) -> None:
    *sections, leaf = dotted.split(".")
    node = raw
    for section in sections:
        child = node.setdefault(section, {})
        if child is None:
            # "server:" with nothing under it in YAML reads as null: an empty section.
            child = node[section] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"invalid configuration:\n  {dotted} (from {source}): {section} is not a section")
        node = child
    node[leaf] = value


def _describe(exc: ValidationError, sources: Mapping[str, str]) -> str:
    lines = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        key = ".".join(loc) or "(top level)"
        source = _source_of(loc, sources)
        if source:
            key += f" (from {source})"
        if error["type"] == "extra_forbidden":
            message = "unknown key" + _suggestion(loc)
        else:
            message = error["msg"] + ("" if _may_hold_secrets(loc) else _shown_input(error["input"]))
        lines.append(f"{key}: {message}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _may_hold_secrets(loc: tuple[str, ...]) -> bool:
    """Tokens, JWT secrets, and a Redis URL's password: never echoed into logs."""
    return loc[:1] in (("auth",), ("mercure",)) or loc[:2] == ("broker", "redis_url")


def _source_of(loc: tuple[str, ...], sources: Mapping[str, str]) -> str | None:
    """Which override set this key, the section holding it, or a key under it, if any."""
    for length in range(len(loc), 0, -1):
        source = sources.get(".".join(loc[:length]))
        if source is not None:
            return source
    below = ".".join(loc) + "."
    return next((source for key, source in sources.items() if key.startswith(below)), None)


def _suggestion(loc: tuple[str, ...]) -> str:
    """`` (did you mean 'port'?)`` for a misspelt key of a known section."""
    model = config_env.model_at(Settings, loc[:-1])
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1) if model is not None else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def _shown_input(value: object) -> str:
    """The offending value for scalars, shortened; sections and lists are not repeated."""
    if isinstance(value, dict | list) or value is None:
        return ""
    text = repr(value)
    return f" (got {text[:60]}{'...' if len(text) > 60 else ''})"
