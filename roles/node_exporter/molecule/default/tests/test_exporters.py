"""Verify node_exporter, blackbox_exporter and opensearch_exporter on one host.

The three roles share this scenario (CI-time budget). No OpenSearch runs
here: the OpenSearch exporter points at a port where nothing answers, runs,
and reports elasticsearch_cluster_health_up 0. What needs the real cluster
(cluster health, node stats as the monitoring user) is proven on the lab by
tests/acceptance/test_dashboards.py through Prometheus.
"""

import os
import time

import pytest
import testinfra
import yaml

PREFIX = os.environ.get("MOLECULE_INSTANCE_PREFIX", "sp")
NAME = PREFIX + "-node-exporter"
ADDRESS = "10.239.0.11"
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
CREDENTIALS = "/etc/prometheus/opensearch-exporter.env"

testinfra_hosts = ["ansible://" + NAME]


def _password():
    path = os.path.join(os.path.dirname(__file__), "..", "molecule.yml")
    with open(path, encoding="utf-8") as f:
        # Molecule turns $$ into $ (and expands $NAME) when it reads molecule.yml.
        return yaml.safe_load(f)["provisioner"]["inventory"]["group_vars"]["molecule"]["opensearch_exporter_password"].replace(
            "$$", "$")


PASSWORD = _password()


def get(host, url, timeout=10):
    """Body of a GET from the host itself (python3: the image has no curl)."""
    code = (
        "import sys,urllib.request\n"
        f"print(urllib.request.urlopen({url!r},timeout={timeout}).read().decode())\n"
    )
    return host.check_output("python3 -c %s", code)


def wait_listening(host, spec, seconds=40):
    for _ in range(seconds):
        if host.socket(spec).is_listening:
            return True
        time.sleep(1)
    return False


def metric_lines(text, name):
    return [line for line in text.splitlines() if line.startswith(name + " ") or line.startswith(name + "{")]


# --- node_exporter ---------------------------------------------------------

def test_node_exporter_running_on_the_private_address_only(host):
    svc = host.service("prometheus-node-exporter")
    assert svc.is_running and svc.is_enabled
    assert wait_listening(host, f"tcp://{ADDRESS}:9100")
    assert not host.socket("tcp://0.0.0.0:9100").is_listening
    assert not host.socket("tcp://127.0.0.1:9100").is_listening


def test_node_exporter_flags(host):
    args = host.file("/etc/default/prometheus-node-exporter").content_string
    assert f"--web.listen-address={ADDRESS}:9100" in args
    assert f"--collector.textfile.directory={TEXTFILE_DIR}" in args
    assert "--collector.systemd" in args and "--collector.processes" in args
    assert not host.package("prometheus-node-exporter-collectors").is_installed


def test_node_metrics(host):
    text = get(host, f"http://{ADDRESS}:9100/metrics")
    for name in ("node_cpu_seconds_total", "node_memory_MemAvailable_bytes", "node_load1",
                 "node_filesystem_avail_bytes", "node_processes_state"):
        assert metric_lines(text, name), f"{name} missing from /metrics"
    units = metric_lines(text, "node_systemd_unit_state")
    assert any('name="prometheus-node-exporter.service"' in u and 'state="active"' in u and u.endswith(" 1")
               for u in units), "the systemd collector does not report the exporter's own unit"
    assert not any(".mount\"" in u for u in units), "mount units should be excluded"
    assert metric_lines(text, 'node_scrape_collector_success{collector="systemd"}')[0].endswith(" 1")


def test_textfile_directory_and_a_dropped_file_is_exported(host):
    d = host.file(TEXTFILE_DIR)
    assert d.is_directory and d.user == "root" and d.group == "root" and d.mode == 0o755
    path = f"{TEXTFILE_DIR}/molecule.prom"
    with host.sudo():
        host.run_expect([0], f"printf '# TYPE molecule_textfile_test gauge\\nmolecule_textfile_test 42\\n' > {path}.tmp"
                             f" && mv {path}.tmp {path}")
    try:
        text = get(host, f"http://{ADDRESS}:9100/metrics")
        assert "molecule_textfile_test 42" in text
        assert 'node_textfile_scrape_error 0' in text
    finally:
        with host.sudo():
            host.run(f"rm -f {path}")


# --- blackbox_exporter -----------------------------------------------------

def assert_running_on_loopback_only(host, unit, port):
    svc = host.service(unit)
    assert svc.is_running and svc.is_enabled
    assert wait_listening(host, f"tcp://127.0.0.1:{port}")
    assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening


def test_blackbox_running_on_loopback_only(host):
    assert_running_on_loopback_only(host, "prometheus-blackbox-exporter", 9115)


def test_blackbox_modules(host):
    f = host.file("/etc/prometheus/blackbox.yml")
    assert f.user == "root" and f.mode == 0o644
    modules = yaml.safe_load(f.content_string)["modules"]
    assert set(modules) >= {"http_2xx", "http_2xx_tls", "tcp_connect"}
    tls = modules["http_2xx_tls"]["http"]
    assert tls["fail_if_not_ssl"] is True
    assert tls["tls_config"] == {"ca_file": "/etc/ssl/certs/ca-certificates.crt", "insecure_skip_verify": False}
    host.run_expect([0], "prometheus-blackbox-exporter --config.check --config.file=/etc/prometheus/blackbox.yml")


@pytest.mark.parametrize("module,target,expected", [
    ("http_2xx", f"http://{ADDRESS}:9100/metrics", "1"),
    ("tcp_connect", f"{ADDRESS}:9100", "1"),
    # plain HTTP fails the TLS module (fail_if_not_ssl)
    ("http_2xx_tls", f"http://{ADDRESS}:9100/metrics", "0"),
    ("tcp_connect", "127.0.0.1:1", "0"),
])
def test_blackbox_probes(host, module, target, expected):
    text = get(host, f"http://127.0.0.1:9115/probe?module={module}&target={target}", timeout=15)
    assert metric_lines(text, "probe_success") == [f"probe_success {expected}"], text


# --- opensearch_exporter ---------------------------------------------------

def _exporter_pid(host):
    return host.check_output("systemctl show -P MainPID prometheus-elasticsearch-exporter").strip()


def test_opensearch_exporter_running_on_loopback(host):
    # 1.5.0 starts listening after its first cluster-info call times out (10 s)
    # when OpenSearch is away: wait_listening waits for it.
    assert_running_on_loopback_only(host, "prometheus-elasticsearch-exporter", 9114)


def test_opensearch_exporter_password_not_on_the_command_line(host):
    pid = _exporter_pid(host)
    assert pid != "0"
    with host.sudo():
        cmdline = host.file(f"/proc/{pid}/cmdline").content_string.replace("\0", " ")
        ps = host.check_output("ps -eo args")
    assert "--es.uri=https://127.0.0.1:9299" in cmdline
    assert "--es.ca=/etc/ssl/certs/ca-certificates.crt" in cmdline
    assert "--es.all" in cmdline
    assert "ssl-skip-verify" not in cmdline
    assert PASSWORD not in cmdline and PASSWORD not in ps
    assert "Mon1tor" not in ps
    assert "Mon1tor" not in host.file("/etc/default/prometheus-elasticsearch-exporter").content_string


def test_opensearch_exporter_gets_the_exact_credentials_from_a_root_only_file(host):
    f = host.file(CREDENTIALS)
    assert f.user == "root" and f.group == "root" and f.mode == 0o600
    pid = _exporter_pid(host)
    with host.sudo():
        environ = host.file(f"/proc/{pid}/environ").content_string.split("\0")
    # the special characters ($ " ` \ # space) survived systemd's environment file parsing
    assert f"ES_PASSWORD={PASSWORD}" in environ
    assert "ES_USERNAME=monitoring" in environ


def test_opensearch_exporter_runs_as_its_own_user(host):
    pid = _exporter_pid(host)
    user = host.check_output(f"ps -o user= -p {pid}").strip()
    assert user not in ("root", "prometheus"), user


def test_opensearch_exporter_metrics_and_no_password_in_them_or_the_journal(host):
    text = get(host, "http://127.0.0.1:9114/metrics")
    assert metric_lines(text, "elasticsearch_cluster_health_up") == ["elasticsearch_cluster_health_up 0"]
    assert "Mon1tor" not in text
    with host.sudo():
        journal = host.check_output("journalctl -u prometheus-elasticsearch-exporter --no-pager -o cat")
    assert "connection refused" in journal
    assert "Mon1tor" not in journal
