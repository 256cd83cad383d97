"""The log formatters, in process: JSON lines carry structured ``extra`` fields without
replacing their own and stay one line; text lines append them as ``key=value`` pairs and
escape control characters (the logs of the real process: tests/e2e/test_logs.py)."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator

import pytest

from sse_hub.config.settings import LogConfig
from sse_hub.ops.logs import JsonFormatter, TextFormatter, make_handler

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: \S.*")


@pytest.fixture
def logger_to(request: pytest.FixtureRequest) -> Iterator[Callable[[str], tuple[logging.Logger, io.StringIO]]]:
    """``logger, output = logger_to("json")``: a logger of its own writing through the hub's
    handler to a string (the root logger, and pytest's capture, are left alone)."""
    attached: list[tuple[logging.Logger, logging.Handler]] = []

    def make(log_format: str) -> tuple[logging.Logger, io.StringIO]:
        output = io.StringIO()
        logger = logging.getLogger(f"{request.node.name}.{log_format}")
        handler = make_handler(LogConfig(format=log_format), output)  # type: ignore[arg-type]
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)
        attached.append((logger, handler))
        return logger, output

    yield make
    for logger, handler in attached:
        logger.removeHandler(handler)


def test_json_lines_carry_extra_fields_without_replacing_their_own(
    logger_to: Callable[[str], tuple[logging.Logger, io.StringIO]],
) -> None:
    logger, output = logger_to("json")
    logger.info("connect", extra={"client": "c_1", "channels": ["a", "b"], "time": "spoofed", "when": object})
    (line,) = output.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["message"] == "connect"
    assert (entry["client"], entry["channels"]) == ("c_1", ["a", "b"])
    assert entry["time"] != "spoofed" and ISO_UTC.fullmatch(entry["time"])
    assert entry["when"] == str(object)  # not JSON: written as its str()


def test_json_keeps_a_traceback_and_a_multi_line_message_on_one_line(
    logger_to: Callable[[str], tuple[logging.Logger, io.StringIO]],
) -> None:
    logger, output = logger_to("json")
    try:
        raise ValueError("first\nsecond")
    except ValueError:
        logger.exception("failed\nhere")
    (line,) = output.getvalue().splitlines()
    entry = json.loads(line)
    assert (entry["level"], entry["message"]) == ("error", "failed\nhere")
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("ValueError: first\nsecond")


def test_text_lines_append_extra_fields_as_key_value_pairs(
    logger_to: Callable[[str], tuple[logging.Logger, io.StringIO]],
) -> None:
    logger, output = logger_to("text")
    logger.info("disconnect", extra={"client": "c_1", "reason": "slow", "user_agent": 'Mozilla 5 "x"', "empty": ""})
    (line,) = output.getvalue().splitlines()
    assert TEXT_LINE.fullmatch(line), line
    assert line.endswith(' disconnect client=c_1 reason=slow user_agent="Mozilla 5 \\"x\\"" empty=""')


def test_a_record_formatted_by_another_handler_first_still_gives_one_clean_json_line() -> None:
    record = logging.makeLogRecord(
        {"name": "sse_hub.core.hub", "levelno": logging.INFO, "levelname": "INFO", "msg": "a %s"}
    )
    record.args = ("b",)
    TextFormatter().format(record)  # sets record.message and record.asctime, as pytest's handler does
    entry = json.loads(JsonFormatter().format(record))
    assert set(entry) == {"time", "level", "logger", "message"}
    assert entry["message"] == "a b"


def test_text_lines_escape_control_characters_so_a_client_cannot_forge_a_line(
    logger_to: Callable[[str], tuple[logging.Logger, io.StringIO]],
) -> None:
    logger, output = logger_to("text")
    forged = "\r\n2026-01-01 00:00:00,000 ERROR sse_hub: forged\x1b[2J"
    logger.info("request rejected path=/events/%s", forged, extra={"agent": forged})
    (line,) = output.getvalue().splitlines()
    assert TEXT_LINE.fullmatch(line), line
    escaped = "\\r\\n2026-01-01 00:00:00,000 ERROR sse_hub: forged\\x1b[2J"
    assert line.endswith(f"path=/events/{escaped} agent={json.dumps(escaped)}")
