"""Monitoring endpoints held to the same TLS profile as the load balancers.

Prometheus (9090) and Alertmanager (9093) on every monitoring host serve
HTTPS with a certificate from the platform CA, follow Mozilla's intermediate
profile (the platform TLS profile in Go's terms, roles/platform) and ask
for basic auth; Prometheus sends its alerts to every Alertmanager over that
HTTPS with the Alertmanager user. sslyze runs from the controller as for
the load balancers (the lab opens both ports to the controller in
inventories/lab/group_vars/all/main.yml; against another inventory, run the
suite from a host the firewall lets in). The other checks run on the
monitoring host itself (prometheus_api.py: the CA file, the passwords from
the files Prometheus uses, never on a command line).
"""

from __future__ import annotations

import time

import prometheus_api
import pytest
from tlsprobe import sslyze_scan

pytestmark = pytest.mark.groups("monitoring")


def _name(host) -> str:
    return host.backend.get_hostname()


@pytest.mark.parametrize("port_var", ["prometheus_web_port", "alertmanager_web_port"])
def test_sslyze_mozilla_intermediate_compliant(host, inventory, platform_ca, port_var):
    """sslyze checks the live endpoint against Mozilla's intermediate profile
    (the name the certificate carries: the inventory name; by address)."""
    name = _name(host)
    port = int(inventory.resolved(name, port_var))
    scan = sslyze_scan(name, port, inventory.resolved(name, "prometheus_private_address"), platform_ca)
    print(scan.report())
    assert scan.compliant, f"{name}:{port}: {scan.verdict} {scan.issues}\n{scan.report()}"


def test_alertmanager_needs_tls_and_credentials(host, inventory):
    """HTTPS verified against the platform CA; without credentials 401 on the
    API, the UI and /metrics, 200 with them; plain HTTP gets no usable answer."""
    paths = ["/api/v2/status", "/", "/metrics"]
    anonymous = prometheus_api.alertmanager_get_many(host, inventory, paths, authenticated=False)
    assert [r["status"] for r in anonymous] == [401, 401, 401], anonymous
    authenticated = prometheus_api.alertmanager_get_many(host, inventory, paths)
    assert [r["status"] for r in authenticated] == [200, 200, 200], [r["status"] for r in authenticated]
    plain = prometheus_api.alertmanager_get_many(host, inventory, ["/-/ready"], authenticated=False,
                                                 plain_http=True)[0]
    assert plain["status"] == 400 and "HTTP request to an HTTPS server" in plain["body"], plain


def test_prometheus_needs_credentials(host, inventory):
    anonymous = prometheus_api.get_many(host, inventory, ["/api/v1/status/buildinfo", "/metrics"],
                                        authenticated=False)
    assert [r["status"] for r in anonymous] == [401, 401], anonymous


def test_prometheus_sends_to_every_alertmanager_over_tls(host, inventory):
    """Every monitoring host's Alertmanager is an active, HTTPS Alertmanager
    of this Prometheus, and sending to it has not failed."""
    wanted = {f"https://{inventory.resolved(m, 'prometheus_private_address')}:"
              f"{inventory.resolved(m, 'alertmanager_web_port')}/api/v2/alerts"
              for m in inventory.hosts_in("monitoring")}
    data = prometheus_api.get_json(host, inventory, "/api/v1/alertmanagers")["data"]
    active = {a["url"] for a in data["activeAlertmanagers"]}
    assert active == wanted, data
    errors = prometheus_api.get_json(
        host, inventory, "/api/v1/query?query=sum(prometheus_notifications_errors_total)")["data"]["result"]
    assert not errors or float(errors[0]["value"][1]) == 0, errors


def test_firing_alerts_reach_alertmanager(host, inventory):
    """Every alert firing in Prometheus is in this Alertmanager within a
    minute (the lab's containers share a loaded kernel and usually raise
    some; with none firing there is nothing to follow here, and the
    disruptive test_monitoring.py::test_a_stopped_app_server_alerts_end_to_end_and_resolves
    raises one and follows it through this same HTTPS path)."""
    firing = {a["labels"]["alertname"]
              for a in prometheus_api.get_json(host, inventory, "/api/v1/alerts")["data"]["alerts"]
              if a["state"] == "firing"}
    deadline, seen = time.monotonic() + 60, set()
    while True:
        alerts = prometheus_api.alertmanager_get_json(host, inventory, "/api/v2/alerts?active=true")
        seen = {a["labels"].get("alertname") for a in alerts}
        if firing <= seen or time.monotonic() > deadline:
            break
        time.sleep(5)
    # An alert may resolve meanwhile: what is still firing must be there.
    still = {a["labels"]["alertname"]
             for a in prometheus_api.get_json(host, inventory, "/api/v1/alerts")["data"]["alerts"]
             if a["state"] == "firing"}
    missing = (firing & still) - seen
    assert not missing, f"firing in Prometheus but not in Alertmanager: {sorted(missing)}"
