"""deploy/grafana/sse-hub.json as a Grafana dashboard model: read by grafana-foundation-sdk
(Grafana's own generated types) and written back, every field we wrote survives (a
misspelled or unknown field is dropped, so it fails here); every panel is a panel plugin
the model knows, every query a Prometheus query on the dashboard's datasource variable,
and the panels tile the grid without overlapping. Its PromQL against promtool and a real
hub's /metrics: tests/e2e/test_observability.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from grafana_foundation_sdk.cog import runtime
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.cog.runtime import UnknownDataquery
from grafana_foundation_sdk.models import prometheus
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel, RowPanel

from tests.support.observability import dashboard, panels

GRID_COLUMNS = 24
# Fields Grafana's editor writes on export that the SDK's models do not carry (a query
# variable's display string), so that an exported dashboard can be dropped in as is.
EDITOR_ONLY_FIELDS = frozenset({"definition"})
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def model() -> Dashboard:
    register_default_plugins()  # the panel and query types, so their options are read too
    return Dashboard.from_json(dashboard())


def as_plain(value: object) -> object:
    """The SDK's ``to_json`` leaves nested models as objects: make them plain JSON."""
    return json.loads(json.dumps(value, default=lambda model: model.to_json()))


def dropped(written: object, read_back: object, path: str = "") -> list[str]:
    """Where ``written`` has a field or value that ``read_back`` lacks."""
    if isinstance(written, dict) and isinstance(read_back, dict):
        lost = []
        for key, value in written.items():
            if key in EDITOR_ONLY_FIELDS:
                continue
            where = f"{path}.{key}"
            lost += dropped(value, read_back[key], where) if key in read_back else [where]
        return lost
    if isinstance(written, list) and isinstance(read_back, list) and len(written) == len(read_back):
        pairs = enumerate(zip(written, read_back, strict=True))
        return [where for i, (item, back) in pairs for where in dropped(item, back, f"{path}[{i}]")]
    return [] if written == read_back else [f"{path}: {written!r} became {read_back!r}"]


def test_the_dashboard_survives_the_grafana_model_unchanged(model: Dashboard) -> None:
    assert dropped(dashboard(), as_plain(model.to_json())) == []
    assert model.uid == "sse-hub" and model.title


def test_every_panel_is_a_known_panel_plugin_with_prometheus_queries(model: Dashboard) -> None:
    assert model.panels
    for panel in model.panels:
        if isinstance(panel, RowPanel):
            continue
        assert isinstance(panel, Panel)
        known = runtime.panelcfg_config(panel.type_val) is not None
        assert known, f"{panel.title}: unknown panel type {panel.type_val}"
        assert panel.title and panel.description, f"panel {panel.id_val} has no title or description"
        assert panel.targets, f"{panel.title}: no query"
        for target in panel.targets:
            assert isinstance(target, prometheus.Dataquery), f"{panel.title}: {type(target).__name__}"
            assert not isinstance(target, UnknownDataquery)
            assert target.expr, panel.title


def test_every_query_uses_the_datasource_variable_so_the_dashboard_imports_anywhere() -> None:
    document = dashboard()
    names = [variable["name"] for variable in document["templating"]["list"]]
    assert names == ["datasource", "job", "instance"]
    for panel in panels(document):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert all(target["datasource"] == DATASOURCE for target in panel["targets"]), panel["title"]


def cells(panel: dict[str, Any]) -> set[tuple[int, int]]:
    grid = panel["gridPos"]
    assert 0 <= grid["x"] and grid["x"] + grid["w"] <= GRID_COLUMNS, panel["title"]
    return {(grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])}


def test_panels_fit_the_grid_and_never_overlap() -> None:
    taken: dict[tuple[int, int], str] = {}
    document = dashboard()
    for panel in panels(document):
        for cell in cells(panel):
            assert cell not in taken, f"{panel['title']!r} overlaps {taken[cell]!r}"
            taken[cell] = panel["title"]
    ids = [panel["id"] for panel in panels(document)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
