"""Monitoring (roles/prometheus, roles/alertmanager and the exporters).

Against the live Prometheus and Alertmanager of each monitoring host, through
their HTTP APIs, queried from that host itself (their private address; the
firewall opens 9090 and 9093 to the monitoring group). Prometheus and
Alertmanager answer over HTTPS with basic auth only (prometheus_api.py). The end-to-end alert
test stops a real app server and waits for the alert in Alertmanager.
"""

from __future__ import annotations

import time
import urllib.parse

import prometheus_api
import pytest
from disruption import disruption_lock
from hostinfo import in_container

pytestmark = pytest.mark.groups("monitoring")


def _name(host) -> str:
    return host.backend.get_hostname()


def alertmanager(host, inventory, path):
    """Alertmanager's API over HTTPS as the platform's Alertmanager user."""
    return prometheus_api.alertmanager_get_json(host, inventory, path)


def prom(host, inventory, path):
    """Prometheus's API over HTTPS as the platform's Prometheus user."""
    return prometheus_api.get_json(host, inventory, path)


def test_prometheus_web_needs_tls_and_credentials(host, inventory):
    """HTTPS verified against the platform CA; without credentials 401 on
    the UI, the API and /metrics; plain HTTP gets no answer it could use."""
    anonymous = prometheus_api.get_many(host, inventory, ["/api/v1/status/buildinfo", "/graph", "/metrics"],
                                        authenticated=False)
    assert [r["status"] for r in anonymous] == [401, 401, 401], anonymous
    assert prom(host, inventory, "/api/v1/status/buildinfo")["status"] == "success"
    # Plain HTTP on the TLS port: Go's server answers 400 "Client sent an
    # HTTP request to an HTTPS server" and nothing else. A refused or timed
    # out connection would be another failure, not this control.
    plain = prometheus_api.get_many(host, inventory, ["/-/ready"], authenticated=False, plain_http=True)[0]
    assert plain["status"] == 400 and "HTTP request to an HTTPS server" in plain["body"], plain


def targets(host, inventory):
    return prom(host, inventory, "/api/v1/targets?state=active")["data"]["activeTargets"]


def test_prometheus_and_alertmanager_run(host):
    for unit in ("prometheus", "prometheus-alertmanager"):
        svc = host.service(unit)
        assert svc.is_running and svc.is_enabled, unit


def test_every_target_is_up(host, inventory):
    """Every scrape target of every job: up (fresh targets get a minute)."""
    deadline, down = time.time() + 90, []
    while time.time() < deadline:
        down = [f"{t['labels'].get('job')}/{t['labels'].get('instance')}: {t.get('lastError') or t['health']}"
                for t in targets(host, inventory) if t["health"] != "up"]
        if not down:
            break
        time.sleep(5)
    assert not down, "targets not up:\n" + "\n".join(down)


def test_every_inventory_host_is_scraped_by_node_exporter(host, inventory):
    instances = {t["labels"].get("instance") for t in targets(host, inventory)
                 if t["labels"].get("job") == "node"}
    # The instance label is the inventory name or the host:port address.
    wanted = {h: {h, f"{inventory.address(h)}:9100"} for h in inventory.all_hosts()}
    missing = [h for h, names in wanted.items() if not names & instances]
    assert not missing, f"no node target for {missing} (have {sorted(instances)})"


def test_each_tier_has_its_exporter_up(host, inventory):
    jobs = {t["labels"].get("job") for t in targets(host, inventory) if t["health"] == "up"}
    # Prometheus itself, hosts, the app's /metrics, OpenSearch, the probes.
    for job in ("prometheus", "alertmanager", "node", "app", "opensearch"):
        assert job in jobs, f"job {job} has no target up (jobs up: {sorted(jobs)})"
    assert any(j.startswith("blackbox") for j in jobs), f"no blackbox probe job up: {sorted(jobs)}"
    engines = {inventory.resolved(lb, "platform_loadbalancer_engine") for lb in inventory.hosts_in("loadbalancers")}
    for engine in engines & {"haproxy", "nginx"}:
        assert engine in jobs, f"job {engine} (the load balancers' exporter) has no target up"


def test_alert_rules_loaded_and_evaluating_cleanly(host, inventory):
    groups = prom(host, inventory, "/api/v1/rules?type=alert")["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    names = {r["name"] for r in rules}
    for expected in ("InstanceDown", "OpenSearchClusterRed", "TLSCertificateExpiringSoon", "BackupStale"):
        assert expected in names, f"{expected} not loaded ({sorted(names)})"
    broken = [f"{r['name']}: {r.get('lastError')}" for r in rules if r.get("health") not in ("ok", "unknown")]
    assert not broken, broken


def test_probes_of_the_public_endpoint_and_the_apps_succeed(host, inventory):
    result = prom(host, inventory, "/api/v1/query?" + urllib.parse.urlencode({"query": "probe_success"}))
    series = result["data"]["result"]
    assert series, "no probe_success series: the blackbox jobs scrape nothing"
    failing = [s["metric"].get("instance") for s in series if s["value"][1] != "1"]
    assert not failing, f"probes failing: {failing}"


# Alerts about figures a container shares with every other container on its
# machine: node_exporter in a container reads the shared kernel's load, CPU
# and memory. In the lab, nine containers on one 2-core VM that the test run
# itself keeps busy, they may rightly fire; about a host that is not a
# container (any real inventory) they are real alerts.
SHARED_KERNEL_ALERTS = {"HighLoad", "HighCPU", "HighMemoryUsage"}


def _inventory_host(inventory, instance: str) -> str | None:
    """The inventory host an instance label names (its name, or address:port)."""
    base = instance.rsplit(":", 1)[0] if ":" in instance else instance
    for name in inventory.all_hosts():
        if base in (name, inventory.address(name)):
            return name
    return None


def test_no_alert_is_firing_on_the_healthy_platform(host, inventory, peer):
    """Nothing fires, except a shared-kernel alert about a host that is a
    container (SHARED_KERNEL_ALERTS). Every other alert counts, BackupStale
    included: it fires only where a backup wrote its metric and is stale."""
    alerts = alertmanager(host, inventory, "/api/v2/alerts?active=true&silenced=false&inhibited=false")
    containers: dict[str, bool] = {}
    firing, excused = [], []
    for alert in alerts:
        name, instance = alert["labels"]["alertname"], alert["labels"].get("instance", "")
        about = _inventory_host(inventory, instance)
        if name in SHARED_KERNEL_ALERTS and about is not None:
            if about not in containers:
                containers[about] = in_container(peer(about))
            if containers[about]:
                excused.append(f"{name} {about}")
                continue
        firing.append(f"{name} {instance}".strip())
    if excused:
        print("shared-kernel alerts about containers (not counted):", ", ".join(sorted(excused)))
    assert not firing, f"alerts firing on a healthy platform: {sorted(firing)}"


@pytest.mark.disruptive
@pytest.mark.once  # one monitoring host is enough
def test_a_stopped_app_server_alerts_end_to_end_and_resolves(host, inventory, peer):
    """Stop the search service on the last app server: an alert naming it
    reaches Alertmanager within the lab's `for` windows, and is resolved
    once the service is back."""
    victim = inventory.hosts_in("app_servers")[-1]
    unit = inventory.resolved(victim, "app_name")
    address = inventory.address(victim)

    # The alerts a stopped service raises (its scrape target and its /ready
    # probe); host-level ones (load, memory) are not about the service.
    service_alerts = {"InstanceDown", "TargetDown", "AppNotReady", "HAProxyBackendDown"}

    def about_victim():
        alerts = alertmanager(host, inventory, "/api/v2/alerts?active=true")
        return [a for a in alerts if a["labels"].get("alertname") in service_alerts
                and any(victim in str(v) or address in str(v) for v in a["labels"].values())]

    # One app server out at a time (the "app" lock); load tests through the
    # load balancers may run beside it.
    with disruption_lock("app"), peer(victim).sudo():
        peer(victim).run_expect([0], f"systemctl stop {unit}")
        try:
            deadline, seen = time.time() + 180, []
            while time.time() < deadline and not seen:
                time.sleep(5)
                seen = about_victim()
        finally:
            peer(victim).run_expect([0], f"systemctl start {unit}")
        assert seen, f"no alert about {victim} reached Alertmanager within 180 s"
        names = {a["labels"]["alertname"] for a in seen}
        deadline, left = time.time() + 240, seen
        while time.time() < deadline and left:
            time.sleep(5)
            left = about_victim()
        assert not left, f"alerts about {victim} still active 240 s after it came back: {names}"
