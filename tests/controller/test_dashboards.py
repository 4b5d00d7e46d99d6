"""The Grafana dashboards of roles/grafana/files/dashboards/ are sound.

Grafana cannot be installed on the test machine (roles/grafana/README.md), so
the dashboards are checked here, without Grafana:
  - each file is valid JSON with a unique dashboard uid, unique panel ids and
    titles, and panels inside Grafana's 24-column grid;
  - every panel and target uses the provisioned datasource by uid (the uid in
    the role's datasource provisioning template);
  - every target has a non-empty expr, and every expr parses: all of them go
    into one rules file that `promtool check rules` must accept (Grafana's
    variables replaced first, as tests/acceptance/test_dashboards.py does);
  - every metric an expr reads comes from an exporter the platform runs, and
    the app's metric names are those app/src/searchplat_app/metrics.py defines.
What the live Prometheus answers for each expr is checked on the lab by
tests/acceptance/test_dashboards.py.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "grafana"
DASHBOARDS = sorted((ROLE / "files" / "dashboards").glob("*.json"))
DATASOURCE_TEMPLATE = ROLE / "templates" / "etc" / "grafana" / "provisioning" / "datasources" / "searchplat.yaml.j2"
APP_METRICS = ROOT / "app" / "src" / "searchplat_app" / "metrics.py"

# Grafana's variables and the values queries get in the tests.
SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "${instance}": ".*",
    "$instance": ".*",
}
# Metric families the platform exports (node_exporter, HAProxy's built-in
# exporter, prometheus-nginx-exporter, elasticsearch_exporter, blackbox, the
# app, Prometheus itself).
EXPORTER_PREFIXES = ("node_", "haproxy_", "nginx_", "elasticsearch_", "probe_", "searchplat_", "prometheus_")
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan"}


def substitute(expr: str) -> str:
    for variable, value in SUBSTITUTIONS.items():
        expr = expr.replace(variable, value)
    return expr


def metric_names(expr: str) -> set[str]:
    """Metric names read by a PromQL expression (a tokenizer good enough for these dashboards)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                      # string literals
    text = re.sub(r"\{[^}]*\}", "", text)                                # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)                               # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        following = text[match.end():].lstrip()
        if following.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        if re.fullmatch(r"[0-9.e+-]+", word):
            continue
        names.add(word)
    return names


def load(path: pathlib.Path) -> dict:
    return json.loads(path.read_text())


def panels(dashboard: dict):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])   # collapsed rows


def targets(dashboard: dict):
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def app_metric_names() -> set[str]:
    source = APP_METRICS.read_text()
    names = set()
    for kind, name in re.findall(r'\b(Counter|Histogram|Gauge|Summary)\(\s*"([a-z_:][a-z0-9_:]*)"', source):
        if kind == "Histogram":
            names |= {name + "_bucket", name + "_sum", name + "_count"}
        elif kind == "Summary":
            names |= {name, name + "_sum", name + "_count"}
        else:
            names.add(name)
    return names


def provisioned_uid() -> str:
    template = DATASOURCE_TEMPLATE.read_text()
    assert re.search(r"^\s+uid: \{\{ _grafana_datasource_uid \| to_json \}\}$", template, re.M), \
        "the datasource template must take its uid from _grafana_datasource_uid"
    return yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["_grafana_datasource_uid"]


def test_the_three_dashboards_exist():
    assert [p.name for p in DASHBOARDS] == ["hosts.json", "opensearch.json", "platform-overview.json"]
    builtin = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["_grafana_builtin_dashboards"]
    assert sorted(builtin) == [p.name for p in DASHBOARDS], "vars/main.yml must list every dashboard file"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_valid_json_with_unique_panel_ids_and_titles(path):
    dashboard = load(path)
    assert dashboard.get("uid") and dashboard.get("title")
    ids = [p.get("id") for p in panels(dashboard)]
    assert all(isinstance(i, int) for i in ids), f"{path.name}: every panel needs an integer id"
    assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
    titles = [p.get("title") for p in panels(dashboard)]
    assert all(titles) and len(titles) == len(set(titles)), f"{path.name}: empty or duplicate panel titles"
    for panel in panels(dashboard):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, f"{path.name}: {panel['title']} off the grid"


def test_dashboard_uids_unique():
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids))
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid) for uid in uids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_datasource_is_the_provisioned_one(path):
    uid = provisioned_uid()
    dashboard = load(path)
    for panel in panels(dashboard):
        if panel.get("type") == "row":
            continue
        assert panel.get("datasource") == {"type": "prometheus", "uid": uid}, panel["title"]
        for target in panel.get("targets", []):
            assert target.get("datasource", panel["datasource"])["uid"] == uid, panel["title"]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            assert variable["datasource"]["uid"] == uid, variable["name"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_target_has_an_expr_and_reads_platform_metrics(path):
    app_names = app_metric_names()
    assert app_names, "no metric found in app/src/searchplat_app/metrics.py"
    dashboard = load(path)
    count = 0
    for panel, target in targets(dashboard):
        expr = target.get("expr", "")
        assert expr.strip(), f"{path.name}: {panel['title']} target {target.get('refId')} has no expr"
        assert target.get("refId"), f"{path.name}: {panel['title']} target without refId"
        names = metric_names(substitute(expr))
        assert names, f"{path.name}: {panel['title']}: no metric in {expr}"
        for name in names:
            assert name == "up" or name.startswith(EXPORTER_PREFIXES), \
                f"{path.name}: {panel['title']}: {name} is not from an exporter the platform runs"
            if name.startswith("searchplat_"):
                assert name in app_names, f"{path.name}: {panel['title']}: the app defines no {name}"
        count += 1
    assert count >= 5
    for panel in panels(dashboard):
        if panel.get("type") != "row":
            assert panel.get("targets"), f"{path.name}: {panel['title']} has no target"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_variables_are_substituted(path):
    """Every $variable an expr uses is one the tests know how to replace."""
    for panel, target in targets(load(path)):
        left = re.findall(r"\$\{?\w+\}?", substitute(target["expr"]))
        assert not left, f"{path.name}: {panel['title']}: unknown variable(s) {left}"


def test_metric_name_tokenizer():
    assert metric_names('sum by (instance) (rate(node_cpu_seconds_total{mode="idle"}[1m]))') == {"node_cpu_seconds_total"}
    assert metric_names('a_metric / on (cluster, name) b_metric{area="heap"} > bool 0') == {"a_metric", "b_metric"}
    assert metric_names('(sum(rate(x_total{s=~"5.."}[1m])) or vector(0)) / 2') == {"x_total"}


def test_every_expr_parses(promtool, tmp_path):
    """Each expr as a recording rule: `promtool check rules` parses every one."""
    rules = []
    for path in DASHBOARDS:
        for panel, target in targets(load(path)):
            rules.append({"record": f"dashboard:{path.stem.replace('-', '_')}:{panel['id']}{target['refId'].lower()}",
                          "expr": substitute(target["expr"])})
    rule_file = tmp_path / "dashboards.rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, sort_keys=False))
    result = subprocess.run([promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_promtool_rejects_a_broken_expr(promtool, tmp_path):
    """The check above can fail: a broken expr is refused."""
    rule_file = tmp_path / "broken.rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"record": "dashboard:broken", "expr": "sum by (instance (rate(node_load1[1m])"}]}]}))
    result = subprocess.run([promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
