"""Settings for a test, built from sections as the YAML file would hold them."""

from __future__ import annotations

from typing import Any

from sse_hub.config.settings import Settings


def make_settings(**sections: Any) -> Settings:
    """``make_settings(limits={"max_connections": 2}, demo_page=False)``."""
    return Settings.model_validate(sections)
