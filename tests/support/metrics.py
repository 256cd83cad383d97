"""Reading ``GET /metrics``: one scrape parsed with prometheus_client's parser, its sample
values by name and labels."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Scrape:
    """One parsed ``/metrics`` body: sample values by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families: dict[str, Metric] = {family.name: family for family in text_string_to_metric_families(text)}
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in self.families.values():
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                assert key not in self.samples, f"duplicate sample {key}"
                self.samples[key] = sample.value

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, frozenset(labels.items()))]

    def by_label(self, name: str, label: str) -> dict[str, float]:
        return {dict(labels)[label]: value for (sample, labels), value in self.samples.items() if sample == name}


async def scrape(client: TestClient[Any, Any] | aiohttp.ClientSession, url: str = "/metrics") -> Scrape:
    response = await client.get(url)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == CONTENT_TYPE
    return Scrape(await response.text())
