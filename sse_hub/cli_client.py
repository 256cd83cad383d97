"""Transitional: the client's command line moved to ``sse_hub.client.cli``.

Kept only until the committed ``sse_hub/cli.py`` imports it from there; then it goes.
"""

from __future__ import annotations

from sse_hub.client.cli import add_commands, run

__all__ = ["add_commands", "run"]
