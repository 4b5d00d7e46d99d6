"""Verify the lb_nginx role on a real nginx in front of three placeholder upstreams.

Most requests come from the controller over the Docker bridge (its address is
exempt from the per-client limits in this scenario); the rate-limit test runs
inside the container from loopback, which is not exempt. TLS is verified
against the scenario's test CA (read from the container) with the certificate
name lb.searchplat.test. Every wait is a loop bounded by a deadline.
"""

import json
import re
import subprocess
import sys
import tempfile
import time

import pytest

NAME = "lb.searchplat.test"
STATS_USER = "stats"
STATS_PASSWORD = "molecule-stats-password"
BACKENDS = {"up1", "up2", "up3"}
CONF = "/etc/nginx/conf.d/searchplat-lb.conf"


@pytest.fixture(scope="module")
def address(host):
    """The container's eth0 address (= lb_nginx_private_address here)."""
    return host.check_output("ip -4 -o route get 1.1.1.1 | sed -n 's/.* src \\([0-9.]*\\).*/\\1/p'").strip()


@pytest.fixture(scope="module")
def ca_file(host):
    """The test CA (stand-in for roles/pki) copied to the controller."""
    with tempfile.NamedTemporaryFile("w", suffix="-ca.crt", delete=False) as f:
        f.write(host.file("/etc/ssl/searchplat/ca.crt").content_string)
    return f.name


def curl(*args, timeout=30):
    """curl on the controller; returns (stdout, stderr, rc)."""
    proc = subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True, timeout=timeout)
    return proc.stdout, proc.stderr, proc.returncode


def lb_get(address, ca_file, path="/", *extra):
    """GET https://lb.searchplat.test<path> from the controller; returns (status, headers, body)."""
    with tempfile.NamedTemporaryFile("r") as hdr:
        out, err, rc = curl(
            "--cacert", ca_file, "--resolve", f"{NAME}:443:{address}", "-D", hdr.name, *extra, f"https://{NAME}{path}"
        )
        assert rc == 0, err
        with open(hdr.name) as f:  # text mode: CRLF read as LF
            raw = f.read()
    # The last header block (after any interim response).
    block = raw.strip().split("\n\n")[-1].split("\n")
    status = int(block[0].split()[1])
    headers = {}
    for line in block[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return status, headers, out


def test_packages_services_and_config(host):
    assert host.package("nginx").is_installed
    assert host.package("nginx").version.startswith("1.22")
    assert host.package("prometheus-nginx-exporter").is_installed
    for unit in ("nginx", "prometheus-nginx-exporter"):
        assert host.service(unit).is_running
        assert host.service(unit).is_enabled
    assert host.run("nginx -t -q").rc == 0
    assert not host.file("/etc/nginx/sites-enabled/default").exists
    modules = host.run("nginx -V").stderr
    for module in ("http_ssl_module", "http_v2_module", "http_stub_status_module", "http_realip_module"):
        assert module in modules
    conf = host.file(CONF).content_string
    assert "least_conn;" in conf
    assert re.search(r"keepalive \d+;", conf)
    assert "max_fails=" in conf and "fail_timeout=" in conf
    assert "proxy_next_upstream error timeout http_502 http_503 http_504;" in conf
    # GET and HEAD: short tries in @idempotent; writes keep the long timeouts.
    assert "location @idempotent {" in conf and "proxy_read_timeout 2s;" in conf
    assert "proxy_read_timeout 10s;" in conf  # the scenario's lb_nginx_proxy_read_timeout
    assert "non_idempotent" not in conf.split("proxy_next_upstream error")[1].split(";")[0]
    assert "ssl_session_tickets off;" in conf
    assert "ssl_ecdh_curve X25519:prime256v1:secp384r1;" in conf
    assert "server_tokens off;" in host.file("/etc/nginx/nginx.conf").content_string


def test_ocsp_stapling_off_for_the_internal_ca(host):
    # The test CA's certificate names no OCSP responder: auto means off.
    assert host.run("openssl x509 -noout -ocsp_uri -in /etc/ssl/searchplat/loadbalancer.crt").stdout.strip() == ""
    conf = host.file(CONF).content_string
    assert "ssl_stapling on;" not in conf
    assert "the certificate names no OCSP responder" in conf


def test_listeners(host, address):
    sockets = host.check_output("ss -ltnH").splitlines()
    local = [line.split()[3] for line in sockets]
    assert "0.0.0.0:443" in local
    assert "0.0.0.0:80" in local
    status = sorted(a for a in local if a.endswith(":8404"))
    assert status == sorted([f"{address}:8404", "127.0.0.1:8404"])
    assert [a for a in local if a.endswith(":9113")] == [f"{address}:9113"]


def test_https_through_the_load_balancer(address, ca_file):
    status, headers, body = lb_get(address, ca_file, "/")
    assert status == 200
    assert headers["x-backend"] in BACKENDS
    assert json.loads(body)["backend"] == headers["x-backend"]
    assert headers["server"] == "nginx"  # server_tokens off: no version


def test_http2_negotiated(address, ca_file):
    out, err, rc = curl(
        "--http2", "--cacert", ca_file, "--resolve", f"{NAME}:443:{address}",
        "-o", "/dev/null", "-w", "%{http_version}", f"https://{NAME}/",
    )
    assert rc == 0, err
    assert out == "2"


def test_http_redirects_to_https(address):
    out, err, rc = curl(
        "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-H", f"Host: {NAME}", f"http://{address}/search?q=x"
    )
    assert rc == 0, err
    assert out == f"301 https://{NAME}/search?q=x"


@pytest.mark.parametrize(
    "flag,accepted",
    [("-tls1", False), ("-tls1_1", False), ("-tls1_2", True), ("-tls1_3", True)],
)
def test_tls_versions(address, ca_file, flag, accepted):
    # SECLEVEL=0 on the client so that only the server can refuse old versions.
    proc = subprocess.run(
        ["openssl", "s_client", "-connect", f"{address}:443", "-servername", NAME, "-CAfile", ca_file,
         flag, "-cipher", "DEFAULT:@SECLEVEL=0", "-verify_return_error"],
        input="", capture_output=True, text=True, timeout=30,
    )
    if accepted:
        assert proc.returncode == 0, proc.stderr
        assert "Verify return code: 0 (ok)" in proc.stdout
    else:
        assert proc.returncode != 0
        assert "alert protocol version" in proc.stderr or "unsupported protocol" in proc.stderr, proc.stderr


def test_security_headers(address, ca_file):
    status, headers, _ = lb_get(address, ca_file, "/")
    assert status == 200
    assert headers["strict-transport-security"] == "max-age=63072000"
    assert headers["x-content-type-options"] == "nosniff"
    # The upstream sends SAMEORIGIN; the load balancer's DENY replaces it.
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])


def test_forwarded_headers_and_request_id(address, ca_file):
    _, headers, body = lb_get(address, ca_file, "/", "-H", "X-Forwarded-For: 203.0.113.9")
    seen = json.loads(body)["headers"]
    assert seen["Host"] == NAME
    assert seen["X-Forwarded-Proto"] == "https"
    # This is the edge: the client's own X-Forwarded-For is replaced.
    assert "203.0.113.9" not in seen["X-Forwarded-For"]
    assert re.fullmatch(r"[0-9.]+", seen["X-Forwarded-For"])
    assert seen["X-Request-ID"] == headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", seen["X-Request-ID"])
    # A sane client request ID is kept, a malformed one replaced.
    _, headers, body = lb_get(address, ca_file, "/", "-H", "X-Request-ID: client-id-42")
    assert json.loads(body)["headers"]["X-Request-ID"] == "client-id-42" == headers["x-request-id"]
    _, _, body = lb_get(address, ca_file, "/", "-H", "X-Request-ID: bad id {}")
    assert re.fullmatch(r"[0-9a-f]{32}", json.loads(body)["headers"]["X-Request-ID"])


def test_body_limit_413_with_headers(address, ca_file):
    with tempfile.NamedTemporaryFile("wb") as body:
        body.write(b"x" * (2 * 1024 * 1024))
        body.flush()
        status, headers, _ = lb_get(address, ca_file, "/upload", "--data-binary", f"@{body.name}")
    assert status == 413
    # Security headers on nginx's own error page too (`always`).
    assert headers["strict-transport-security"] == "max-age=63072000"
    assert headers["x-frame-options"] == "DENY"
    status, _, out = lb_get(address, ca_file, "/upload", "--data-binary", "x" * 1000)
    assert status == 200
    assert json.loads(out)["body_length"] == 1000


def test_rate_limit_429_after_the_burst(host):
    # From loopback inside the container (not exempt): 5 r/s, burst 10.
    # One curl, 40 requests on one keepalive connection: well above 5/s.
    # -D is global: the file holds every response's headers, the last block
    # is the last response's.
    urls = " ".join([f"https://{NAME}/ -o /dev/null"] * 40) + " -D /tmp/lb-test-429.headers"
    codes = host.check_output(
        "curl -s -w '%%{http_code}\\n' --cacert /etc/ssl/searchplat/ca.crt --resolve %s:443:127.0.0.1 %s"
        % (NAME, urls)
    ).split()
    assert codes.count("200") >= 10
    assert codes.count("429") >= 10
    assert set(codes) <= {"200", "429"}
    assert codes[-1] == "429"
    dump = host.file("/tmp/lb-test-429.headers").content_string.lower()
    headers = re.split(r"\r?\n\r?\n", dump.strip())[-1]
    assert headers.startswith("http/2 429")
    # Security headers on the 429 page too (`always`).
    assert "strict-transport-security: max-age=63072000" in headers
    assert "x-content-type-options: nosniff" in headers
    conf = host.file(CONF).content_string
    assert "limit_req_status 429;" in conf and "limit_conn_status 429;" in conf
    time.sleep(3)  # let the bucket drain for later loopback requests


def test_status_and_stats_need_auth_and_stay_private(address, ca_file):
    out, _, _ = curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{address}:8404/stub_status")
    assert out == "401"
    out, _, _ = curl("-o", "/dev/null", "-w", "%{http_code}", "-u", f"{STATS_USER}:wrong-password",
                     f"http://{address}:8404/stub_status")
    assert out == "401"
    out, err, rc = curl("-u", f"{STATS_USER}:{STATS_PASSWORD}", f"http://{address}:8404/stub_status")
    assert rc == 0, err
    assert out.startswith("Active connections:")
    out, _, _ = curl("-u", f"{STATS_USER}:{STATS_PASSWORD}", f"http://{address}:8404/metrics")
    assert "nginx_up 1" in out
    # Not on the public listener: /stub_status there is just a path of the app.
    status, headers, body = lb_get(address, ca_file, "/stub_status")
    assert headers["x-backend"] in BACKENDS
    assert "Active connections" not in body


def test_htpasswd_file(host):
    f = host.file("/etc/nginx/searchplat-stats.htpasswd")
    assert f.user == "root"
    assert f.group == "www-data"
    assert f.mode == 0o640
    assert re.fullmatch(r"stats:\$2[aby]\$\d\d\$.{53}\n", f.content_string)
    assert STATS_PASSWORD not in f.content_string


def test_exporter_answers_metrics(address):
    out, err, rc = curl(f"http://{address}:9113/metrics")
    assert rc == 0, err
    assert "nginx_up 1" in out
    assert "nginx_connections_accepted" in out


def test_exporter_settings(host, address):
    args = host.file("/etc/default/prometheus-nginx-exporter").content_string
    assert "-nginx.scrape-uri=http://127.0.0.1:8404/stub_status" in args
    assert f"-web.listen-address={address}:9113" in args
    assert STATS_PASSWORD not in args


def test_json_access_log(host, address, ca_file):
    lb_get(address, ca_file, "/log-probe", "-H", "X-Request-ID: log-probe-1")
    lines = host.check_output("tail -n 50 /var/log/nginx/access.json.log").splitlines()
    records = [json.loads(line) for line in lines]
    for record in records:
        for key in ("request_id", "upstream_addr", "status", "request_time", "upstream_response_time"):
            assert key in record
        assert record["request_id"]
    probe = [r for r in records if r["uri"] == "/log-probe"][-1]
    assert probe["request_id"] == "log-probe-1"
    assert probe["status"] == 200
    assert probe["upstream_addr"].startswith("127.0.0.1:800")
    assert float(probe["upstream_response_time"]) >= 0
    assert probe["tls_protocol"] in ("TLSv1.2", "TLSv1.3")


def wait_all_backends(address, ca_file, deadline=40):
    """GET until every backend has answered (failed servers come back after fail_timeout)."""
    seen = set()
    end = time.time() + deadline
    while time.time() < end and seen != BACKENDS:
        status, headers, _ = lb_get(address, ca_file, "/")
        assert status == 200
        seen.add(headers["x-backend"])
        time.sleep(0.2)
    return seen


def test_post_is_never_retried_get_is(address, ca_file):
    # /only-up2 answers 503 on up1 and up3. A GET is retried until up2 answers.
    for _ in range(6):
        status, headers, _ = lb_get(address, ca_file, "/only-up2")
        assert status == 200
        assert headers["x-backend"] == "up2"
    assert wait_all_backends(address, ca_file) == BACKENDS
    # A POST that lands on up1 or up3 gets their 503: it was not retried.
    answers = set()
    for _ in range(12):
        status, headers, _ = lb_get(address, ca_file, "/only-up2", "--data-binary", "payload")
        answers.add((status, headers.get("x-backend")))
        if status == 503:
            break
    assert any(code == 503 and backend in ("up1", "up3") for code, backend in answers), answers
    assert wait_all_backends(address, ca_file) == BACKENDS


def test_failover_and_recovery(host, address, ca_file):
    host.check_output("systemctl stop lb-test-upstream@1")
    try:
        for _ in range(30):
            status, headers, _ = lb_get(address, ca_file, "/")
            assert status == 200
            assert headers["x-backend"] in ("up2", "up3")
    finally:
        host.check_output("systemctl start lb-test-upstream@1")
    # Back in rotation once fail_timeout (5 s here) has passed.
    assert wait_all_backends(address, ca_file) == BACKENDS


def test_a_hung_upstream_costs_one_short_try(host, address, ca_file):
    """up1 stopped with SIGSTOP: its socket still accepts, nothing answers.
    Each GET is answered by another server within one idempotent try
    timeout (2 s) plus its own time; up1 is back once it answers again."""
    host.check_output("systemctl kill --signal=SIGSTOP lb-test-upstream@1")
    slowest = 0.0
    try:
        for _ in range(20):
            started = time.monotonic()
            status, headers, _ = lb_get(address, ca_file, "/")
            slowest = max(slowest, time.monotonic() - started)
            assert status == 200
            assert headers["x-backend"] in ("up2", "up3")
    finally:
        host.check_output("systemctl kill --signal=SIGCONT lb-test-upstream@1")
    assert slowest < 3, f"a GET took {slowest:.1f} s with a hung upstream"
    assert wait_all_backends(address, ca_file) == BACKENDS


def test_reload_under_load_loses_nothing(host, address):
    master = host.check_output("cat /run/nginx.pid")
    hey = subprocess.Popen(
        ["hey", "-n", "2000", "-c", "20", "-host", NAME, f"https://{address}/"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    reloads = 0
    time.sleep(1)
    while hey.poll() is None and reloads < 5:
        host.check_output("systemctl reload nginx")
        reloads += 1
        time.sleep(1)
    out, _ = hey.communicate(timeout=300)
    sys.stdout.write(out)
    assert reloads >= 2, "the load ended before two reloads: " + out
    codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    assert codes == {"200": "2000"}, out
    assert "Error distribution" not in out, out
    assert host.check_output("cat /run/nginx.pid") == master  # reloaded, not restarted


def test_sslyze_mozilla_intermediate(address, ca_file):
    proc = subprocess.run(
        [sys.executable, "-m", "sslyze", "--mozilla_config=intermediate", "--certinfo_ca_file", ca_file,
         f"{NAME}:443{{{address}}}"],
        capture_output=True, text=True, timeout=300,
    )
    sys.stdout.write(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{NAME}:443: OK - Compliant." in proc.stdout
    # Exactly the profile's groups and TLS 1.3 suites (ssl_ecdh_curve, ssl_conf_command).
    curves = re.search(r"Supported curves:\s+(.*)$", proc.stdout, re.M)
    assert curves and sorted(curves.group(1).split(", ")) == ["X25519", "secp256r1", "secp384r1"], proc.stdout
    tls13 = proc.stdout.split("* TLS 1.3 Cipher Suites:", 1)[1].split("* ", 1)[0]
    assert sorted(re.findall(r"^\s+(TLS_\w+)\s", tls13, re.M)) == [
        "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"], tls13
