"""Alerts and the Grafana dashboard against the real tools and a real hub: the rules pass
``promtool check rules`` and their unit tests (``promtool test rules``), the example scrape
config passes ``promtool check config``, every dashboard query parses as PromQL, every
metric a rule or a panel reads is one a real hub's ``/metrics`` serves (two workers on
Redis, so the per-worker series are there too), the PrometheusRule holds the same rules
for the job its ServiceMonitor makes, and every alert has its section in
docs/operations.md. The dashboard as a Grafana model: tests/unit/test_grafana_dashboard.py.

promtool is Debian's ``prometheus`` package (offline); a missing one fails, naming it.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.http import open_stream
from tests.support.kustomize import K8S, only, render, with_component
from tests.support.observability import (
    OPERATIONS,
    RULES,
    as_recording_rules,
    dashboard,
    dashboard_exprs,
    metric_names,
    rules,
)
from tests.support.processes import HubProcess, require_binary
from tests.support.waiting import eventually

PROMETHEUS = RULES.parent
# Series Prometheus makes itself for every target, not served by /metrics.
MADE_BY_PROMETHEUS = {"up"}
TIMEOUT = 10
# A scrape with the stream open and both workers in it.
WHOLE_GROUP = ('sse_hub_channel_connections{channel="observed"} 1.0', "sse_hub_workers 2.0")


def promtool(*args: str, cwd: Path = PROMETHEUS) -> str:
    result = subprocess.run(
        [require_binary("promtool", "prometheus"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# -- promtool ------------------------------------------------------------------------------


def test_the_alert_rules_pass_promtool_check_rules() -> None:
    output = promtool("check", "rules", RULES.name)
    assert f"SUCCESS: {len(rules())} rules found" in output


def test_the_alert_rules_pass_their_promtool_unit_tests() -> None:
    output = promtool("test", "rules", "sse-hub.rules.test.yml")
    assert "SUCCESS" in output
    tested = set(re.findall(r"alertname: (\w+)", (PROMETHEUS / "sse-hub.rules.test.yml").read_text()))
    assert tested == {rule["alert"] for rule in rules()}, "every alert has a unit test"


def test_the_example_scrape_config_passes_promtool_check_config() -> None:
    # --syntax-only: the token file it names exists only on a real Prometheus host.
    promtool("check", "config", "--syntax-only", "prometheus.example.yml")
    config = yaml.safe_load((PROMETHEUS / "prometheus.example.yml").read_text())
    assert config["rule_files"] == [RULES.name]
    assert [job["job_name"] for job in config["scrape_configs"]] == ["sse-hub"]


def test_every_dashboard_query_parses_as_promql(tmp_path: Path) -> None:
    exprs = dashboard_exprs(dashboard())
    output = promtool("check", "rules", str(as_recording_rules(exprs, tmp_path / "dashboard.rules.yml")))
    assert f"SUCCESS: {len(exprs)} rules found" in output


# -- metric names, against a real hub ----------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('up{job="sse-hub"} == 0', {"up"}),
        ('absent(up{job="a b"} == 1)', {"up"}),
        ("sum by (instance) (rate(a_total{x=~'y'}[5m])) / on (job) group_left b", {"a_total", "b"}),
        ("histogram_quantile(0.99, sum by (le) (rate(c_bucket[1m] offset 1h))) > 1e3", {"c_bucket"}),
        ("topk(10, sum without (worker) (d)) and bool e or f unless g", {"d", "e", "f", "g"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def used_metrics() -> dict[str, set[str]]:
    """Metric name -> where it is read (the rules, the dashboard)."""
    used: dict[str, set[str]] = {}
    exprs = {f"rule {rule.get('alert') or rule['record']}": rule["expr"] for rule in rules()}
    for where, expr in {**exprs, **dashboard_exprs(dashboard())}.items():
        for name in metric_names(expr):
            used.setdefault(name, set()).add(where)
    return used


async def served_metrics(hub: HubProcess) -> set[str]:
    """The sample names of one scrape of ``hub`` with a stream open (so that the per-channel
    gauge has a sample) and every worker in it."""
    async with aiohttp.ClientSession() as session, contextlib.AsyncExitStack() as streams:
        await streams.enter_async_context(open_stream(session, f"{hub.url}/events/observed"))
        texts: list[str] = []

        async def whole_group_scraped() -> bool:
            async with session.get(f"{hub.url}/metrics") as response:
                texts.append(await response.text())
            return all(line in texts[-1].splitlines() for line in WHOLE_GROUP)

        await eventually(whole_group_scraped, timeout=TIMEOUT)
    return {sample.name for family in text_string_to_metric_families(texts[-1]) for sample in family.samples}


async def test_every_metric_a_rule_or_panel_reads_is_served_by_a_real_hub(
    hub_process: Callable[..., HubProcess], redis_server: str
) -> None:
    hub = hub_process(
        args=["--workers", "2"],
        env={
            "SSE_HUB_BROKER__BACKEND": "redis",
            "SSE_HUB_BROKER__REDIS_URL": redis_server,
            "SSE_HUB_BROKER__PREFIX": f"observability-{secrets.token_hex(4)}",
        },
    )
    served = await served_metrics(hub)
    used = used_metrics()
    assert {"sse_hub_connections", "sse_hub_fanout_latency_seconds_bucket", "up"} <= used.keys()
    unknown = {name: sorted(where) for name, where in used.items() if name not in served | MADE_BY_PROMETHEUS}
    assert not unknown, f"read but not served by /metrics: {unknown}"


# -- Kubernetes and the runbook ----------------------------------------------------------------


def test_the_prometheusrule_holds_the_rules_for_the_job_its_servicemonitor_makes(tmp_path: Path) -> None:
    objects = render(with_component(tmp_path, K8S / "components" / "servicemonitor"))
    rule = only(objects, "PrometheusRule", "sse-hub")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    # The Prometheus Operator names a ServiceMonitor's job after the Service (no jobLabel).
    assert "jobLabel" not in only(objects, "ServiceMonitor", "sse-hub")["spec"]
    service = only(objects, "Service", "sse-hub")["metadata"]["name"]
    jobs = {job for rule in rules() for job in re.findall(r'job="([^"]*)"', rule["expr"])}
    assert jobs == {service}


def test_every_alert_has_a_severity_a_summary_and_a_section_in_operations_md() -> None:
    headings = set(re.findall(r"^### (\w+)$", OPERATIONS.read_text(), re.MULTILINE))
    for rule in rules():
        alert = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, alert
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], alert
        assert rule["annotations"]["runbook"] == f"docs/operations.md#{alert.lower()}", alert
        assert alert in headings, f"docs/operations.md has no '### {alert}'"
