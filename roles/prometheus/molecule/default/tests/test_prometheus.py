"""Verify the prometheus and alertmanager roles on one monitoring host.

HTTP checks run from the controller against the host's private address
(10.238.0.11 on the scenario's own network): they prove the services listen
there, not only on loopback. Both serve HTTPS only (certificates from
roles/pki, verified against its CA) with basic auth, and follow the
Mozilla intermediate profile: real handshakes with openssl s_client.
"""

import base64
import datetime
import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest

PREFIX = os.environ.get("MOLECULE_INSTANCE_PREFIX", "sp")
testinfra_hosts = ["ansible://" + PREFIX + "-prometheus"]

ADDRESS = "10.238.0.11"
PROMETHEUS = f"https://{ADDRESS}:9090"
ALERTMANAGER = f"https://{ADDRESS}:9093"
# molecule.yml's molecule-only users.
CREDENTIALS = {PROMETHEUS: ("prometheus", "molecule-prometheus-only"),
               ALERTMANAGER: ("alertmanager", "molecule-alertmanager-only")}
CA_FILE = "/etc/ssl/searchplat/ca.crt"
# The CA's copy on the controller (the ca_file fixture fills it in).
LOCAL = {}


@pytest.fixture(scope="module", autouse=True)
def ca_file(host, tmp_path_factory):
    """The platform CA of roles/pki, copied from the host for the clients here."""
    path = tmp_path_factory.mktemp("ca") / "ca.crt"
    path.write_text(host.file(CA_FILE).content_string)
    LOCAL["ca_file"] = str(path)
    return str(path)


def request(url, data=None, auth=True, method=None):
    """(status, body) of a request verified against the CA, with the
    service's user unless auth is False."""
    base = PROMETHEUS if url.startswith(PROMETHEUS) else ALERTMANAGER
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if auth:
        user, password = CREDENTIALS[base]
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    context = ssl.create_default_context(cafile=LOCAL["ca_file"])
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def get(url):
    status, body = request(url)
    assert status == 200, (url, status, body[:300])
    return json.loads(body)


def handshake(port, *args):
    """openssl s_client against the port with args: (accepted, output)."""
    proc = subprocess.run(["openssl", "s_client", "-connect", f"{ADDRESS}:{port}", "-servername", "mon1",
                           *args], input="", capture_output=True, text=True, timeout=20)
    out = proc.stdout + proc.stderr
    return proc.returncode == 0 and "Cipher is (NONE)" not in out, out


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
    assert "--web.config.file=/etc/prometheus/web.yml" in prometheus
    alertmanager = host.file("/etc/default/prometheus-alertmanager").content_string
    assert "--cluster.listen-address= " in alertmanager or '--cluster.listen-address="' in alertmanager
    assert f"--web.listen-address={ADDRESS}:9093" in alertmanager
    assert "--web.config.file=/etc/prometheus/alertmanager-web.yml" in alertmanager


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
    status, body = request(ALERTMANAGER + "/api/v2/alerts", data=json.dumps(alert).encode(), method="POST")
    assert status == 200, body

    def posted():
        return [a for a in get(ALERTMANAGER + "/api/v2/alerts") if a["labels"].get("alertname") == "VerifyCritical"]

    found = wait_for(posted, timeout=30)
    assert found
    assert [r["name"] for r in found[0]["receivers"]] == ["oncall"]


@pytest.mark.parametrize("path", ["/api/v1/status/flags"])
def test_retention_flag(path):
    flags = get(PROMETHEUS + path)["data"]
    assert flags["storage.tsdb.retention.time"] == "2d"


# --- HTTPS, basic auth and the TLS profile ------------------------------------

def test_web_configurations_checked_and_private(host):
    for name in ("web.yml", "alertmanager-web.yml"):
        f = host.file("/etc/prometheus/" + name)
        assert f.user == "root" and f.group == "prometheus" and f.mode == 0o640, name
        host.check_output("promtool check web-config /etc/prometheus/%s", name)
        content = f.content_string
        assert "molecule-" not in content, name  # bcrypt hashes only
        assert "min_version: TLS12" in content and "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA" not in content, content
    secret = host.file("/etc/prometheus/secrets/alerting.alertmanagers.password")
    assert secret.user == "root" and secret.group == "prometheus" and secret.mode == 0o640


@pytest.mark.parametrize("base", [PROMETHEUS, ALERTMANAGER])
def test_only_tls_with_credentials(base):
    """Over HTTPS: 401 without credentials, 200 with; plain HTTP gets no use."""
    path = "/api/v1/status/buildinfo" if base == PROMETHEUS else "/api/v2/status"
    assert request(base + path, auth=False)[0] == 401
    assert request(base + "/metrics", auth=False)[0] == 401
    assert request(base + path)[0] == 200
    plain = "http:" + base.removeprefix("https:")
    try:
        with urllib.request.urlopen(plain + path, timeout=10) as response:
            status, body = response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read().decode()
    assert status == 400 and "HTTP request to an HTTPS server" in body, (status, body[:200])


def test_prometheus_sends_to_the_tls_alertmanager():
    def active():
        data = get(PROMETHEUS + "/api/v1/alertmanagers")["data"]
        return data if data["activeAlertmanagers"] else None

    data = wait_for(active) or get(PROMETHEUS + "/api/v1/alertmanagers")["data"]
    assert [a["url"] for a in data["activeAlertmanagers"]] == [f"{ALERTMANAGER}/api/v2/alerts"], data
    assert not data["droppedAlertmanagers"], data


def test_notifications_reach_alertmanager_without_errors():
    metrics = request(PROMETHEUS + "/metrics")[1].splitlines()
    sent = [line for line in metrics if line.startswith("prometheus_notifications_sent_total{")]
    errors = [line for line in metrics if line.startswith("prometheus_notifications_errors_total{")]
    assert sent and float(sent[0].split()[-1]) > 0, sent
    assert errors and all(float(line.split()[-1]) == 0 for line in errors), errors


@pytest.mark.parametrize("port", [9090, 9093])
def test_mozilla_intermediate_handshakes(port):
    """Real handshakes: the profile's suites and curves are accepted; CBC,
    RSA key exchange, TLS 1.1 and secp521r1 (all offered by Go's defaults
    or accepted before) are refused."""
    # In TLS 1.2 the client's groups also bound the certificate's curve
    # (P-256): curves are checked with TLS 1.3, where they do not.
    accepted = [
        ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"),
        ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"),
        ("-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"),
        ("-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"),
        ("-tls1_3", "-curves", "X25519"),
        ("-tls1_3", "-curves", "prime256v1"),
        ("-tls1_3", "-curves", "secp384r1"),
    ]
    refused = [
        ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"),
        ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-SHA"),
        ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256"),
        ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-SHA384"),
        ("-tls1_1", "-cipher", "ALL:@SECLEVEL=0"),
        ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", "-curves", "secp521r1"),
        ("-tls1_3", "-curves", "secp521r1"),
    ]
    for args in accepted:
        ok, out = handshake(port, "-CAfile", LOCAL["ca_file"], "-verify_return_error", *args)
        assert ok, (args, out[-800:])
    for args in refused:
        ok, out = handshake(port, *args)
        assert not ok, (args, out[-800:])
        # Refused by the server (its alert), not given up by the client.
        assert "alert handshake failure" in out or "alert protocol version" in out, (args, out[-800:])


def test_amtool_on_the_host_reaches_alertmanager(host):
    """root's amtool configuration: this Alertmanager over HTTPS (system trust
    store, roles/pki's CA) with the first user's credentials."""
    for name in ("amtool.yml", "amtool-http.yml"):
        f = host.file("/etc/prometheus/" + name)
        assert f.user == "root" and f.mode == 0o600, name
    with host.sudo():
        out = host.check_output("amtool alert query -o json")
    assert isinstance(json.loads(out), list)
