"""Verify the prometheus and alertmanager roles on one monitoring host.

HTTP checks run from the controller against the host's private address
(10.238.0.11 on the scenario's own network): they prove the services listen
there, not only on loopback.
"""

import datetime
import json
import os
import time
import urllib.request

import pytest

PREFIX = os.environ.get("MOLECULE_INSTANCE_PREFIX", "sp")
testinfra_hosts = ["ansible://" + PREFIX + "-prometheus"]

ADDRESS = "10.238.0.11"
PROMETHEUS = f"http://{ADDRESS}:9090"
ALERTMANAGER = f"http://{ADDRESS}:9093"


def get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read().decode())


def wait_for(check, timeout=60):
    """Retry check() until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(2)


def test_packages_and_services(host):
    for package in ("prometheus", "prometheus-alertmanager"):
        assert host.package(package).is_installed
    for service in ("prometheus", "prometheus-alertmanager"):
        assert host.service(service).is_running
        assert host.service(service).is_enabled


def test_listening_on_the_private_address_only(host):
    listening = host.check_output("ss -H -tln | awk '{print $4}'").split()
    assert f"{ADDRESS}:9090" in listening and f"{ADDRESS}:9093" in listening, listening
    for wildcard in ("0.0.0.0:9090", "*:9090", "[::]:9090", "0.0.0.0:9093", "*:9093", "[::]:9093"):
        assert wildcard not in listening, listening
    # single instance: no cluster listener
    assert not [a for a in listening if a.endswith(":9094")], listening


def test_command_lines(host):
    prometheus = host.file("/etc/default/prometheus").content_string
    assert f"--web.listen-address={ADDRESS}:9090" in prometheus
    assert "--storage.tsdb.retention.time=2d" in prometheus
    assert "--web.config.file" not in prometheus
    alertmanager = host.file("/etc/default/prometheus-alertmanager").content_string
    assert "--cluster.listen-address= " in alertmanager or '--cluster.listen-address="' in alertmanager
    assert f"--web.listen-address={ADDRESS}:9093" in alertmanager


def test_promtool_and_amtool_accept_the_installed_files(host):
    host.check_output("promtool check config /etc/prometheus/prometheus.yml")
    host.check_output("amtool check-config /etc/prometheus/alertmanager.yml")


def test_files_and_permissions(host):
    config = host.file("/etc/prometheus/alertmanager.yml")
    assert config.user == "root" and config.group == "prometheus" and config.mode == 0o640
    for name in ("prometheus.yml", "rules/searchplat.rules.yml", "rules/extra.rules.yml",
                 "file_sd/prometheus.yml", "file_sd/alertmanager.yml", "file_sd/node.yml"):
        f = host.file("/etc/prometheus/" + name)
        assert f.exists and f.user == "root" and f.group == "prometheus", name
    # the job without targets has an empty file_sd file
    assert "[]" in host.file("/etc/prometheus/file_sd/node.yml").content_string


def test_stale_files_removed(host):
    assert not host.file("/etc/prometheus/file_sd/stale.yml").exists
    assert not host.file("/etc/prometheus/rules/old.yml").exists


def test_file_sd_targets_up():
    def targets_up():
        active = get(PROMETHEUS + "/api/v1/targets")["data"]["activeTargets"]
        jobs = {(t["labels"]["job"], t["labels"]["instance"], t["health"]) for t in active}
        return jobs if {("prometheus", "mon1", "up"), ("alertmanager", "mon1", "up")} <= jobs else None

    assert wait_for(targets_up), get(PROMETHEUS + "/api/v1/targets")["data"]["activeTargets"]
    labels = [t["labels"] for t in get(PROMETHEUS + "/api/v1/targets")["data"]["activeTargets"]]
    assert all(label.get("tier") == "monitoring" for label in labels), labels


def test_rules_loaded():
    # A rule's health is "unknown" until its group is first evaluated after a
    # (re)load: side_effect.yml reloads Prometheus just before verify.
    def evaluated():
        groups = get(PROMETHEUS + "/api/v1/rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return groups if rules and all(rule["health"] != "unknown" for rule in rules) else None

    groups = wait_for(evaluated) or get(PROMETHEUS + "/api/v1/rules")["data"]["groups"]
    names = {rule["name"] for group in groups for rule in group["rules"]}
    for alert in ("InstanceDown", "HighErrorRate", "OpenSearchClusterRed", "TLSCertificateExpiringSoon",
                  "BackupStale", "MoleculeWatchdog"):
        assert alert in names, sorted(names)
    unhealthy = [(rule["name"], rule["health"], rule.get("lastError")) for group in groups for rule in group["rules"]
                 if rule["health"] != "ok"]
    assert not unhealthy, unhealthy


def test_alertmanager_config_and_receivers():
    status = get(ALERTMANAGER + "/api/v2/status")
    original = status["config"]["original"]
    assert "oncall" in original and "team" in original
    assert 'severity="critical"' in original
    assert "InstanceDown" in original  # the inhibition rule
    assert status["cluster"]["status"] in ("disabled", "ready")


def test_prometheus_sends_alerts_to_alertmanager():
    def watchdog():
        return [a for a in get(ALERTMANAGER + "/api/v2/alerts") if a["labels"].get("alertname") == "MoleculeWatchdog"]

    found = wait_for(watchdog, timeout=90)
    assert found, get(ALERTMANAGER + "/api/v2/alerts")
    assert found[0]["labels"].get("environment") == "molecule"  # external label
    assert [r["name"] for r in found[0]["receivers"]] == ["team"]  # warning route


def test_a_posted_alert_is_visible_and_routed_by_severity():
    now = datetime.datetime.now(datetime.timezone.utc)
    alert = [{
        "labels": {"alertname": "VerifyCritical", "severity": "critical", "instance": "verify"},
        "annotations": {"summary": "posted by the Molecule verifier"},
        "startsAt": now.isoformat(),
        "endsAt": (now + datetime.timedelta(minutes=5)).isoformat(),
    }]
    request = urllib.request.Request(ALERTMANAGER + "/api/v2/alerts", data=json.dumps(alert).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200

    def posted():
        return [a for a in get(ALERTMANAGER + "/api/v2/alerts") if a["labels"].get("alertname") == "VerifyCritical"]

    found = wait_for(posted, timeout=30)
    assert found
    assert [r["name"] for r in found[0]["receivers"]] == ["oncall"]


@pytest.mark.parametrize("path", ["/api/v1/status/flags"])
def test_retention_flag(path):
    flags = get(PROMETHEUS + path)["data"]
    assert flags["storage.tsdb.retention.time"] == "2d"
