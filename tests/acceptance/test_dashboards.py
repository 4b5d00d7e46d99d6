"""The Grafana dashboards (roles/grafana/files/dashboards/) against the live Prometheus.

Grafana itself cannot be installed here (roles/grafana/README.md); what its
panels would show can: every expr of every panel is sent to the Prometheus
HTTP API on each monitoring host, with Grafana's variables replaced
($__rate_interval by 2m, four 30 s scrape intervals as Grafana would pick;
$instance by .*). Every query must succeed (valid PromQL, known functions),
and every panel not listed in MAY_BE_EMPTY must return data: a metric name
that no exporter exports, or a label that does not exist, shows up as an
empty core panel.

The queries run on the monitoring host itself (python3, no curl needed),
over HTTPS as the platform's Prometheus user (prometheus_api.py).
"""

from __future__ import annotations

import json
import pathlib
import time
import urllib.parse

import prometheus_api
import pytest

pytestmark = pytest.mark.groups("monitoring")

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "roles" / "grafana" / "files" / "dashboards").glob("*.json"))
SUBSTITUTIONS = {
    "$__rate_interval": "2m",
    "$__interval": "1m",
    "$__range": "1h",
    "${instance}": ".*",
    "$instance": ".*",
}
# Panels that are legitimately empty on a healthy, idle platform: counters
# that exist only once something happened (searches, ingests, OpenSearch
# errors, 5xx answers, rejections), and a filter that drops zero values.
MAY_BE_EMPTY = {
    ("platform-overview", "Load balancer 5xx responses per second (HAProxy)"),
    ("platform-overview", "Searches per second by outcome"),
    ("platform-overview", "Documents ingested per second"),
    ("platform-overview", "App errors talking to OpenSearch"),
    ("opensearch", "Rejected thread pool operations"),
}
# How long to wait for an empty core panel (a Prometheus converged moments
# ago has not yet two samples for rate()).
SETTLE_SECONDS = 120

def substitute(expr: str) -> str:
    for variable, value in SUBSTITUTIONS.items():
        expr = expr.replace(variable, value)
    return expr


def dashboard_targets():
    """(dashboard, panel title, refId, expr) for every target of every panel."""
    rows = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                rows.append((path.stem, panel["title"], target["refId"], substitute(target["expr"])))
    return rows


TARGETS = dashboard_targets()


def query_all(host, inventory, exprs):
    """Prometheus's answer to each instant query (an error status when the
    query is refused or the request fails)."""
    replies = prometheus_api.get_many(
        host, inventory, ["/api/v1/query?" + urllib.parse.urlencode({"query": q}) for q in exprs])
    out = []
    for reply in replies:
        try:
            out.append(json.loads(reply["body"]))
        except ValueError:
            out.append({"status": "error", "error": f"HTTP {reply['status']}: {reply['body'][:200]}"})
    return out


def test_every_panel_query_succeeds_and_core_panels_have_data(host, inventory):
    assert TARGETS, "no dashboard targets found"
    exprs = [t[3] for t in TARGETS]
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        results = query_all(host, inventory, exprs)
        failed = [(t[0], t[1], t[2], r.get("errorType"), r.get("error"))
                  for t, r in zip(TARGETS, results) if r.get("status") != "success"]
        assert not failed, f"queries Prometheus refused: {failed}"
        data_by_panel: dict[tuple[str, str], int] = {}
        for t, r in zip(TARGETS, results):
            key = (t[0], t[1])
            data_by_panel[key] = data_by_panel.get(key, 0) + len(r["data"]["result"])
        empty = sorted(k for k, n in data_by_panel.items() if n == 0 and k not in MAY_BE_EMPTY)
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(15)
    assert not empty, f"core panels without data (dashboard, title): {empty}"


def test_exporters_report_up(host, inventory):
    """The OpenSearch exporter reaches the cluster as the monitoring user, and the blackbox probes pass."""
    results = query_all(host, inventory, ["elasticsearch_cluster_health_up", "probe_success"])
    es = results[0]["data"]["result"]
    assert es and all(r["value"][1] == "1" for r in es), f"elasticsearch_cluster_health_up: {es}"
    probes = results[1]["data"]["result"]
    assert probes, "no blackbox probe results"
    failing = [r["metric"] for r in probes if r["value"][1] != "1"]
    assert not failing, f"failing probes: {failing}"


def test_node_exporter_scraped_on_every_host(host, inventory):
    """Every inventory host's node exporter is a target, and up."""
    result = query_all(host, inventory, ["node_uname_info"])[0]["data"]["result"]
    scraped = {r["metric"].get("instance", "") for r in result}
    missing = [h for h in inventory.all_hosts()
               if not any(i == h or i.startswith(inventory.address(h) + ":") or i.startswith(h + ":") for i in scraped)]
    assert not missing, f"hosts without node metrics: {missing} (instances: {sorted(scraped)})"
