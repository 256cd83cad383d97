"""A hub with Mercure off loads none of Mercure's selector engines (RE2, URL patterns):
checked in a fresh interpreter, since an import once made stays in ``sys.modules``."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

ENGINES = ("re2", "urlpattern")

SCRIPT = """
import asyncio, json, sys
from sse_hub.config.settings import Settings
from sse_hub.web.app import create_app

async def build() -> None:
    create_app(Settings.model_validate({"mercure": {"enabled": %s, "publisher_jwt": {"secret": "s" * 32}}}))

asyncio.run(build())
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def loaded_with(mercure: bool) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT % mercure], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(json.loads(out))


def test_a_hub_with_mercure_off_loads_no_selector_engine() -> None:
    assert loaded_with(mercure=False).isdisjoint(ENGINES)


def test_a_hub_with_mercure_on_loads_them() -> None:
    # Guards the check above against passing because the names are wrong.
    assert set(ENGINES) <= loaded_with(mercure=True)
