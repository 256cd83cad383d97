"""The PromQL of deploy/: the alert rules, the Grafana dashboard's queries with its
variables filled in, and the metric names an expression reads.

``metric_names`` is a small reader, not a PromQL parser: it drops strings, label matchers,
ranges and grouping clauses, then takes every remaining name that is not called (a
function or an aggregation) nor a keyword. The expressions it reads are first parsed by
``promtool check rules``, so it never sees malformed PromQL.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.support.paths import ROOT

RULES = ROOT / "deploy" / "prometheus" / "sse-hub.rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "sse-hub.json"
OPERATIONS = ROOT / "docs" / "operations.md"

# The dashboard's variables as Grafana fills them in, to turn its queries into PromQL.
DASHBOARD_VARIABLES = {"$__rate_interval": "5m", "$job": "sse-hub", "$instance": ".*"}

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAMES = re.compile(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}
# label_values(<selector>, <label>): a Grafana variable query, not PromQL; its selector is.
_LABEL_VALUES = re.compile(r"^label_values\((.*),\s*\w+\)$")


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {name for name, call in _NAMES.findall(text) if not call and name.lower() not in _KEYWORDS}


def rules() -> list[dict[str, Any]]:
    """Every rule of deploy/prometheus/sse-hub.rules.yml, all groups."""
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def panels(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' collapsed panels included."""
    found = []
    for panel in document["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def fill_variables(query: str) -> str:
    for name, value in DASHBOARD_VARIABLES.items():
        query = query.replace(name, value)
    return query


def dashboard_exprs(document: dict[str, Any]) -> dict[str, str]:
    """Each query of the dashboard as PromQL, by where it is: the panels' targets, and the
    selectors of the variables' ``label_values`` queries."""
    exprs = {}
    for panel in panels(document):
        for target in panel.get("targets", []):
            exprs[f"panel {panel['title']!r} {target['refId']}"] = fill_variables(target["expr"])
    for variable in document["templating"]["list"]:
        if variable["type"] == "query":
            matched = _LABEL_VALUES.match(variable["query"]["query"])
            assert matched, f"variable {variable['name']}: not a label_values() query"
            exprs[f"variable {variable['name']}"] = fill_variables(matched.group(1))
    return exprs


def as_recording_rules(exprs: dict[str, str], path: Path) -> Path:
    """``exprs`` as a rule file of recording rules, for ``promtool check rules`` to parse."""
    records = [{"record": f"dashboard:query_{number}", "expr": expr} for number, expr in enumerate(exprs.values())]
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    return path
