"""Verify the lb_haproxy role on a real HAProxy 2.6 with three upstreams.

Traffic comes from two sides:
- the controller (this machine), over the Docker bridge to the container's
  address: curl, openssl s_client, hey and sslyze, with the test CA. The
  bridge's gateway address (the controller's source) is exempt from the
  per-client limits in converge.yml, so the load test is not rate limited;
- inside the container, `lbtest-client` (prepare.yml) from distinct loopback
  source addresses (127.0.0.x), so each limit test has its own entry in
  HAProxy's per-client table.

Every wait is a loop bounded by a deadline.
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import time

import pytest
import yaml

SCENARIO = pathlib.Path(__file__).resolve().parents[1]
ROLES_DIR = SCENARIO.parents[2]
VARS = yaml.safe_load((SCENARIO / "vars" / "scenario.yml").read_text())
NAME = "lb.searchplat.test"
PASSWORD = VARS["lb_haproxy_stats_password"]
USER = "stats"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
THRESHOLD = (
    VARS["lb_haproxy_rate_limit_per_second"] * int(VARS["lb_haproxy_rate_limit_window"].rstrip("s"))
    + VARS["lb_haproxy_rate_limit_burst"]
)


def wait_until(predicate, timeout, interval=0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        time.sleep(interval)


@pytest.fixture(scope="module")
def ip(host):
    return host.check_output(
        "ip -4 -o route get 1.1.1.1 | sed -n 's/.* src \\([0-9.]*\\).*/\\1/p'"
    ).strip()


@pytest.fixture(scope="module")
def gateway(host):
    return host.check_output("ip -4 route show default | awk '{print $3}'").strip()


@pytest.fixture(scope="module")
def ca_file(host, tmp_path_factory):
    path = tmp_path_factory.mktemp("pki") / "ca.crt"
    path.write_text(host.file("/etc/ssl/searchplat/ca.crt").content_string)
    return str(path)


def run(*cmd, timeout=120, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)


def curl(ip, ca_file, *args):
    """curl on the controller to https://lb.searchplat.test (resolved to the container)."""
    return run(
        "curl", "-sS", "--max-time", "20", "--cacert", ca_file,
        "--resolve", "%s:443:%s" % (NAME, ip), *args,
    )


def headers_of(text):
    """Last response's headers from curl -D - output, lower-cased names."""
    block = [b for b in re.split(r"\r?\n\r?\n", text.strip()) if b.startswith("HTTP/")][-1]
    lines = block.splitlines()
    out = {"_status": lines[0]}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        out[k.strip().lower()] = v.strip()
    return out


def client(host, *args):
    return json.loads(host.check_output("lbtest-client " + " ".join(args)))


def server_status(host, server):
    """Status of a be_app server in HAProxy's own stats (runtime API): UP, DOWN..."""
    csv = client(host, "socket", "'show stat'")
    for line in csv.splitlines():
        f = line.split(",")
        if len(f) > 17 and f[0] == "be_app" and f[1] == server:
            return f[17]
    return None


def all_up(host):
    return all((server_status(host, s) or "").startswith("UP") for s in ("up1", "up2", "up3"))


# --- package, service, configuration ---------------------------------------

def test_package_service_and_config(host):
    assert host.package("haproxy").version.startswith("2.6")
    svc = host.service("haproxy")
    assert svc.is_running and svc.is_enabled
    # Debian's unit runs the master-worker with systemd notify (-Ws) and
    # reloads by checking the file and sending USR2 to the master.
    assert "-Ws" in host.check_output("systemctl show haproxy -p ExecStart")
    assert "USR2" in host.check_output("systemctl show haproxy -p ExecReload")
    cfg = host.file("/etc/haproxy/haproxy.cfg")
    assert (cfg.user, cfg.group, cfg.mode) == ("root", "haproxy", 0o640)
    assert "expose-fd listeners" in cfg.content_string
    assert host.run("haproxy -c -q -f /etc/haproxy/haproxy.cfg").rc == 0
    assert "prometheus-exporter" in host.check_output("haproxy -vv")
    # internal CA: no OCSP responder, so no stapled response and no timer
    assert not host.file("/etc/ssl/searchplat/loadbalancer.pem.ocsp").exists
    assert not host.file("/etc/systemd/system/haproxy-ocsp-update.timer").exists


def test_listeners(host, ip):
    out = host.check_output("ss -ltnH")
    listening = {line.split()[3] for line in out.splitlines()}
    assert {"0.0.0.0:443", "0.0.0.0:80", ip + ":8404"} <= listening
    # stats and metrics on the private address only
    assert not {"0.0.0.0:8404", "*:8404", "127.0.0.1:8404", "[::]:8404"} & listening


# --- through the load balancer ---------------------------------------------

def test_https_through_the_lb(ip, ca_file, gateway):
    r = curl(ip, ca_file, "-D", "-", "-H", "X-Forwarded-For: 203.0.113.66", "https://%s/" % NAME)
    assert r.returncode == 0, r.stderr
    head, body = re.split(r"\r?\n\r?\n", r.stdout, maxsplit=1)
    h = headers_of(head)
    assert " 200" in h["_status"]
    assert re.match(r"^up[123]$", h["x-backend"])
    seen = json.loads(body)["headers"]
    # the upstream gets the client's address (spoofed value dropped), the
    # scheme and a generated request id, echoed to the client
    assert seen["x-forwarded-for"] == gateway
    assert seen["x-forwarded-proto"] == "https"
    assert UUID.match(seen["x-request-id"])
    assert h["x-request-id"] == seen["x-request-id"]


def test_request_id_kept_when_valid(ip, ca_file):
    r = curl(ip, ca_file, "-H", "X-Request-ID: lbtest-abc.123", "https://%s/" % NAME)
    assert json.loads(r.stdout)["headers"]["x-request-id"] == "lbtest-abc.123"
    r = curl(ip, ca_file, "-H", "X-Request-ID: bad id <script>", "https://%s/" % NAME)
    assert UUID.match(json.loads(r.stdout)["headers"]["x-request-id"])


def test_http_redirects_to_https(ip):
    r = run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
            "-H", "Host: " + NAME, "http://%s/search?q=a" % ip)
    assert r.stdout == "301 https://%s/search?q=a" % NAME


@pytest.mark.parametrize("version,accepted", [("tls1", False), ("tls1_1", False), ("tls1_2", True), ("tls1_3", True)])
def test_tls_versions(ip, ca_file, version, accepted):
    # SECLEVEL=0 so that the client itself would offer TLS 1.0/1.1: a refusal
    # is the server's ("alert protocol version").
    r = run("openssl", "s_client", "-connect", ip + ":443", "-servername", NAME,
            "-CAfile", ca_file, "-" + version, "-cipher", "DEFAULT:@SECLEVEL=0",
            input="", timeout=30)
    out = r.stdout + r.stderr
    if accepted:
        assert "Verify return code: 0 (ok)" in out and "Cipher is (NONE)" not in out, out
    else:
        assert "alert protocol version" in out, out


def test_tls_session_tickets_off_and_curves(ip, ca_file):
    r = run("openssl", "s_client", "-connect", ip + ":443", "-servername", NAME,
            "-CAfile", ca_file, "-tls1_2", input="", timeout=30)
    assert "TLS session ticket:" not in r.stdout
    r = run("openssl", "s_client", "-connect", ip + ":443", "-servername", NAME,
            "-CAfile", ca_file, "-groups", "secp521r1", input="", timeout=30)
    assert r.returncode != 0  # only X25519, P-256, P-384 are offered


def test_security_headers(ip, ca_file):
    r = curl(ip, ca_file, "-D", "-", "-o", "/dev/null", "https://%s/" % NAME)
    h = headers_of(r.stdout)
    assert h["strict-transport-security"] == "max-age=63072000"
    assert h["x-content-type-options"] == "nosniff"
    assert h["x-frame-options"] == "DENY"
    assert h["referrer-policy"] == "strict-origin-when-cross-origin"
    assert h["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    # the upstream's Server and X-Powered-By are removed; HAProxy adds none
    assert "server" not in h and "x-powered-by" not in h


def test_haproxy_error_pages_carry_headers_and_no_version(ip, ca_file):
    r = curl(ip, ca_file, "-D", "-", "-H", "Host: other.example", "https://%s/" % NAME)
    head, body = re.split(r"\r?\n\r?\n", r.stdout, maxsplit=1)
    h = headers_of(head)
    assert " 421" in h["_status"]
    assert h["strict-transport-security"] == "max-age=63072000"
    assert "server" not in h
    assert not re.search(r"haproxy|2\.6", body, re.I)


def test_http2_negotiated(ip, ca_file):
    r = curl(ip, ca_file, "--http2", "-o", "/dev/null", "-w", "%{http_version}", "https://%s/" % NAME)
    assert r.stdout == "2"
    r = curl(ip, ca_file, "--http1.1", "-o", "/dev/null", "-w", "%{http_version}", "https://%s/" % NAME)
    assert r.stdout == "1.1"


# --- per-client limits (from inside, own source addresses) -----------------

def test_rate_limit_429_after_the_burst(host):
    out = client(host, "burst", "--source", "127.0.0.2", "--count", str(THRESHOLD + 30))
    status = out["status"]
    assert status.get("429", 0) >= 25, out
    assert THRESHOLD - 10 <= status.get("200", 0) <= THRESHOLD, out
    r = client(host, "request", "--source", "127.0.0.2")
    assert r["status"] == 429
    assert r["headers"]["strict-transport-security"] == "max-age=63072000"
    assert "2.6" not in r["body"] and "server" not in r["headers"]


def test_connection_limit(host):
    limit = VARS["lb_haproxy_connection_limit"]
    out = client(host, "conns", "--source", "127.0.0.3", "--count", str(limit + 2))
    assert out[:limit] == ["open"] * limit, out
    assert all(s.startswith("refused") for s in out[limit:]), out


def test_body_size_limit(host):
    limit = VARS["lb_haproxy_max_body_size"]
    ok = client(host, "request", "--source", "127.0.0.4", "--method", "POST", "--body-size", str(limit))
    assert ok["status"] == 200 and json.loads(ok["body"])["body_length"] == limit
    big = client(host, "request", "--source", "127.0.0.4", "--method", "POST", "--body-size", str(limit + 1))
    assert big["status"] == 413
    chunked = client(host, "request", "--source", "127.0.0.4", "--method", "POST", "--body-size", "10", "--chunked")
    assert chunked["status"] == 411


# --- stats page and metrics -------------------------------------------------

def test_stats_and_metrics_need_auth(ip):
    for path in ("/stats", "/metrics"):
        url = "http://%s:8404%s" % (ip, path)
        r = run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", url)
        assert r.stdout == "401"
        r = run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-u", USER + ":wrong-password-123", url)
        assert r.stdout == "401"
    r = run("curl", "-sS", "-u", "%s:%s" % (USER, PASSWORD), "http://%s:8404/metrics" % ip)
    assert 'haproxy_server_status{proxy="be_app",server="up1",state="UP"} 1' in r.stdout
    assert "haproxy_frontend_http_requests_total" in r.stdout
    r = run("curl", "-sS", "-u", "%s:%s" % (USER, PASSWORD), "http://%s:8404/stats" % ip)
    assert "be_app" in r.stdout
    assert "2.6.12" not in r.stdout  # stats hide-version


def test_stats_not_on_other_addresses(host):
    for address in ("127.0.0.1", "127.0.0.2"):
        cmd = host.run("timeout 3 bash -c '</dev/tcp/%s/8404'" % address)
        assert cmd.rc != 0 and "refused" in cmd.stderr


# --- upstream health, failover, retries --------------------------------------

def test_health_check_marks_a_stopped_upstream_down(host):
    assert wait_until(lambda: all_up(host), 30)
    host.check_output("systemctl stop lbtest-upstream@2")
    try:
        assert wait_until(lambda: (server_status(host, "up2") or "").startswith("DOWN"), 20), server_status(host, "up2")
    finally:
        host.check_output("systemctl start lbtest-upstream@2")
    assert wait_until(lambda: (server_status(host, "up2") or "").startswith("UP"), 20)


def test_failover_and_return(host):
    assert wait_until(lambda: all_up(host), 30)
    host.check_output("systemctl stop lbtest-upstream@3")
    try:
        # right away, before the checks mark it DOWN: connect errors are
        # retried on another server
        out = client(host, "burst", "--source", "127.0.0.5", "--count", "30")
        assert out["status"] == {"200": 30}, out
        assert "up3" not in out["backends"]
    finally:
        host.check_output("systemctl start lbtest-upstream@3")
    assert wait_until(lambda: (server_status(host, "up3") or "").startswith("UP"), 20)
    # The returning server gets traffic again (a few bursts: on a loaded
    # machine leastconn may still favour the servers that never left).
    seen = {}
    for source in ("127.0.0.6", "127.0.0.7", "127.0.0.8", "127.0.0.9"):
        out = client(host, "burst", "--source", source, "--count", "30")
        assert out["status"] == {"200": 30}, out
        seen = out["backends"]
        if seen.get("up3", 0) > 0:
            break
        time.sleep(2)
    assert seen.get("up3", 0) > 0, seen


def test_a_hung_upstream_costs_one_short_try(host):
    """up2 stopped with SIGSTOP: its socket still accepts, nothing answers.
    Every GET is answered by another server, none waits longer than one
    idempotent try (2 s) plus its own time; up2 is back once it answers."""
    assert wait_until(lambda: all_up(host), 30)
    host.check_output("systemctl kill --signal=SIGSTOP lbtest-upstream@2")
    try:
        out = client(host, "burst", "--source", "127.0.0.10", "--count", "30")
    finally:
        host.check_output("systemctl kill --signal=SIGCONT lbtest-upstream@2")
    assert out["status"] == {"200": 30}, out
    assert "up2" not in out["backends"], out
    assert out["slowest"] < 3, out
    assert wait_until(lambda: (server_status(host, "up2") or "").startswith("UP"), 30)


def upstream_hits(host, request_id):
    return host.check_output(
        "journalctl -u 'lbtest-upstream@*' -o cat --no-pager | grep -c -- ' %s$' || true" % request_id
    ).strip()


def test_retries_only_for_idempotent_methods(host):
    """/fail-on/up1 answers 503 on up1 only: a GET is retried on another
    server and succeeds, a POST is sent once and its 503 returned."""
    assert wait_until(lambda: all_up(host), 30)
    stamp = str(int(time.time()))
    get_status, post_status = [], {}
    for i in range(9):
        rid = "lbtest-get-%s-%d" % (stamp, i)
        r = client(host, "request", "--source", "127.0.0.7", "--path", "/fail-on/up1", "--header", "'X-Request-ID: %s'" % rid)
        get_status.append(r["status"])
    for i in range(9):
        rid = "lbtest-post-%s-%d" % (stamp, i)
        r = client(host, "request", "--source", "127.0.0.7", "--method", "POST", "--body-size", "10",
                   "--path", "/fail-on/up1", "--header", "'X-Request-ID: %s'" % rid)
        post_status[rid] = r["status"]
    assert get_status == [200] * 9
    failed = [rid for rid, status in post_status.items() if status == 503]
    assert failed, "no POST went to up1: %s" % post_status
    time.sleep(1)
    for rid in failed:
        assert upstream_hits(host, rid) == "1", rid


# --- reloads -----------------------------------------------------------------

def test_reload_keeps_the_master_and_live_requests(host):
    before = host.check_output("systemctl show haproxy -p MainPID --value")
    host.check_output(
        "rm -f /tmp/lbtest-slow.json; "
        # A POST: GETs wait at most lb_haproxy_idempotent_try_timeout (2 s).
        "nohup lbtest-client request --source 127.0.0.8 --method POST --body-size 10 --path /sleep/4"
        " >/tmp/lbtest-slow.json 2>&1 &"
    )
    time.sleep(1.5)
    host.check_output("systemctl reload haproxy")
    done = wait_until(lambda: host.file("/tmp/lbtest-slow.json").content_string.strip(), 20)
    assert json.loads(done)["status"] == 200, done
    assert host.check_output("systemctl show haproxy -p MainPID --value") == before


def test_reload_under_load_loses_no_request(host, ip):
    """hey (2000 requests, 20 at a time) from the controller while haproxy is
    reloaded twice: every answer is a 200, no connection error."""
    hey = subprocess.Popen(
        ["hey", "-n", "2000", "-c", "20", "-host", NAME, "https://%s/" % ip],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        time.sleep(1.5)
        for _ in range(2):
            host.check_output("systemctl reload haproxy")
            time.sleep(1.5)
        out, _ = hey.communicate(timeout=300)
    finally:
        if hey.poll() is None:
            hey.kill()
    codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    assert codes == {"200": "2000"}, out
    assert "Error distribution" not in out, out


# --- TLS compliance, logs, input validation ----------------------------------

def test_sslyze_mozilla_intermediate(ip, ca_file):
    r = run(sys.executable, "-m", "sslyze", "--mozilla_config=intermediate",
            "--certinfo_ca_file", ca_file, "%s:443{%s}" % (NAME, ip), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "%s:443: OK - Compliant." % NAME in r.stdout
    assert re.search(r"Supported curves:\s+X25519, secp256r1, secp384r1\n", r.stdout), r.stdout


def test_json_access_log(host, ip, ca_file):
    rid = "lbtest-log-%d" % int(time.time() * 1000)
    curl(ip, ca_file, "-H", "X-Request-ID: " + rid, "-H", 'Referer: https://example.org/"q"',
         "https://%s/search?q=%%22x%%22" % NAME)

    def entry():
        out = host.run("journalctl -u haproxy -o cat --no-pager | grep -F '\"%s\"'" % rid).stdout
        return out.strip().splitlines()[-1] if out.strip() else None

    line = wait_until(entry, 10)
    assert line, "no access log line for " + rid
    rec = json.loads(line)
    assert rec["request_id"] == rid
    assert rec["status"] == 200
    assert rec["backend"] == "be_app" and re.match(r"^up[123]$", rec["server"])
    assert rec["uri"] == "/search?q=%22x%22"
    assert rec["method"] == "GET" and rec["tls_protocol"].startswith("TLSv1.")
    assert rec["protocol"] in ("HTTP/1.1", "HTTP/2.0")
    for key in ("time_request_ms", "time_connect_ms", "time_response_ms", "time_total_ms"):
        assert isinstance(rec[key], int)
    # the fields lb_nginx's JSON log has, under the same names
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", rec["time"]), rec["time"]
    assert re.match(r"^\d+\.\d+\.\d+\.\d+$", rec["remote_addr"]) and rec["host"] == NAME
    assert rec["http_referer"] == 'https://example.org/"q"' and rec["http_user_agent"].startswith("curl/")
    assert re.match(r"^127\.0\.0\.1:800[123]$", rec["upstream_addr"]), rec["upstream_addr"]
    assert isinstance(rec["bytes_sent"], int) and isinstance(rec["request_length"], int)


def test_validate_rejects_bad_input(host):
    """reject.yml runs lb_haproxy's validate entry point with bad inputs (an
    empty upstream list first); each must fail with a message saying what
    to fix."""
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROLES_DIR), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    r = run(
        os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
        "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(SCENARIO / "reject.yml"),
        cwd=str(SCENARIO), env=env, timeout=600,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    # the failed validate tasks (rescued) print their messages on stderr
    assert "It is empty: the playbook builds it from the private addresses of the app_servers group" in r.stderr
    assert "rescued=15" in r.stdout
