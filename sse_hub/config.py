"""Settings: one YAML file, then ``SSE_HUB_<SECTION>__<KEY>`` environment overrides, then CLI flags.

Every key is optional and has the default written in ``config.example.yaml``. Unknown keys
and bad values raise ConfigError with a message that names the key (``server.port: ...``),
so a typo stops start-up instead of being silently ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "SSE_HUB_"
# Used with fullmatch(): "$" would also match before a trailing newline.
CHANNEL_PATTERN = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")

Port = Annotated[int, Field(ge=0, le=65535)]
Positive = Annotated[int, Field(ge=1)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(Section):
    host: str = "0.0.0.0"
    port: Port = 8080
    shutdown_timeout: Annotated[float, Field(gt=0)] = 10
    cors_origins: list[str] = ["*"]
    trusted_proxies: list[str] = []
    # Seconds a client may take to send its request headers before the connection is dropped.
    request_header_timeout: Annotated[float, Field(gt=0)] = 10


class BrokerConfig(Section):
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://localhost:6379/0"
    prefix: Annotated[str, Field(min_length=1)] = "sse-hub"


class HistoryConfig(Section):
    size: Annotated[int, Field(ge=0)] = 1000


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


class SubscriberJwtConfig(Section):
    secret: str | None = None
    public_key_file: str | None = None
    algorithms: list[str] = ["HS256"]


class AuthConfig(Section):
    publish_tokens: list[str] = []
    admin_tokens: list[str] = []
    subscriber_jwt: SubscriberJwtConfig = SubscriberJwtConfig()


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


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key."""


def load_settings(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Read the YAML file, apply env overrides, then ``overrides`` (dotted keys), validate."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("SSE_HUB_CONFIG") or None
    raw = _read_yaml(Path(path)) if path else {}
    for key, value in _env_overrides(environ).items():
        _set_dotted(raw, key, value)
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(raw, key, value)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc


def _read_yaml(path: Path) -> dict[str, object]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    return loaded


def _env_overrides(environ: Mapping[str, str]) -> dict[str, object]:
    """``SSE_HUB_BROKER__BACKEND=redis`` -> ``{"broker.backend": "redis"}``.

    Values are read as YAML scalars or flow collections, so ``8080`` is a number and
    ``[a, b]`` a list. ``SSE_HUB_CONFIG`` names the file and is no override.
    """
    found: dict[str, object] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "SSE_HUB_CONFIG":
            continue
        key = name[len(ENV_PREFIX) :].lower().replace("__", ".")
        try:
            found[key] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            found[key] = value
    return found


def _set_dotted(raw: dict[str, object], dotted: str, value: object) -> None:
    *sections, leaf = dotted.split(".")
    node = raw
    for section in sections:
        child = node.setdefault(section, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: {section} is not a section")
        node = child
    node[leaf] = value


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        lines.append(f"{key}: {message}")
    return "invalid configuration:\n  " + "\n  ".join(lines)
