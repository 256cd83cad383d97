"""Logging set-up: ``log.level`` and ``log.format`` (``text``, or ``json``: one object per line).

Structured fields: a call may pass ``extra={"client": ..., "reason": ...}``; the text format
appends them as ``key=value`` pairs after the message, the JSON format adds them as fields
of the line's object.

Invariants:

1. A message is one line in either format, whatever a client put in a path, a header or
   a body that ends up in it: the text format writes control characters (CR and LF among
   them) as backslash escapes (a CR as two characters, backslash and r); JSON escapes them.
   A client cannot forge a line. (In the text format a traceback still spans lines.)
2. No credential is logged: ``aiohttp.server``'s lines about requests it could not parse
   quote the raw request line, so they go through ``access_log.SecretFilter``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

from sse_hub.config.settings import LogConfig
from sse_hub.web.access_log import SecretFilter

# Attributes every LogRecord has, plus those Formatter.format() adds; anything else on a
# record came from ``extra=``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# The JSON object's own keys: an ``extra`` of the same name does not replace them.
_JSON_KEYS = frozenset({"time", "level", "logger", "message", "exception", "stack"})
# C0 controls (tab kept), DEL and C1 controls (0x9b is a terminal's CSI) as visible escapes.
_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0)) if code != 0x09}
_ESCAPES |= {0x0A: "\\n", 0x0D: "\\r"}


def one_line(text: str) -> str:
    """``text`` with its control characters escaped, so it prints as one line."""
    return text.translate(_ESCAPES)


def extra_fields(record: logging.LogRecord) -> dict[str, object]:
    return {key: value for key, value in vars(record).items() if key not in _STANDARD and not key.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (ISO 8601 UTC), ``level``, ``logger``,
    ``message``, then the ``extra`` fields, and ``exception`` when there is one."""

    def __init__(self) -> None:
        super().__init__()
        self.converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            if key not in _JSON_KEYS:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``2026-01-02 03:04:05,678 INFO sse_hub.core.hub: connect client=c_1 ip=10.0.0.1``: the
    message, then the ``extra`` fields as ``key=value`` (quoted when they hold spaces)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        # format() has just set record.message for this formatter; every formatter sets its own.
        record.message = one_line(record.message)
        line = super().formatMessage(record)
        fields = extra_fields(record)
        if not fields:
            return line
        return " ".join([line, *(f"{key}={_text_value(value)}" for key, value in fields.items())])


def _text_value(value: object) -> str:
    text = one_line(str(value))
    if text and not any(char.isspace() or char in '"=' for char in text):
        return text
    return json.dumps(text, ensure_ascii=False)


def make_handler(config: LogConfig, stream: TextIO | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if config.format == "json" else TextFormatter())
    return handler


def configure_logging(config: LogConfig) -> None:
    root = logging.getLogger()
    root.handlers[:] = [make_handler(config)]
    root.setLevel(config.level.upper())
    server_logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(installed, SecretFilter) for installed in server_logger.filters):
        server_logger.addFilter(SecretFilter())
    # Python warnings go through logging too, so in JSON format every stderr line of the
    # hub stays one JSON object.
    logging.captureWarnings(True)
