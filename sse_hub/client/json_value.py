"""``JsonValue``: the data a publisher sends, any JSON value (one alias for the client's
modules, so ``publisher`` and ``publish_stream`` need not import each other)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

JsonValue: TypeAlias = "str | int | float | bool | Sequence[JsonValue] | Mapping[str, JsonValue] | None"
