"""Load balancers (roles/lb_nginx, roles/lb_haproxy, roles/pki) on every LB.

Real clients: Python's TLS stack from the controller (sslyze: test_tls_profile.py), curl from a
lab host (rate limits, private status pages), hey for bounded load. The
upstreams are the app servers' real service (roles/app, the reference app in
app/): its /health names the instance that answered, and its JSON access log
shows what the load balancer passed on (client address, scheme, request id).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import time

import pytest
from disruption import disruption_lock
from load import hey_result, start_hey
from netprobe import tcp_probe
from resilience import load_figures, record
from skips import not_configured

pytestmark = pytest.mark.groups("loadbalancers")


HERE = os.path.dirname(__file__)


def _name(host) -> str:
    return host.backend.get_hostname()


# --- fixtures ----------------------------------------------------------------

@pytest.fixture(scope="session")
def app_port(inventory) -> int:
    apps = inventory.hosts_in("app_servers")
    return int(inventory.resolved(apps[0], "app_port")) if apps else 0


@pytest.fixture(scope="session")
def app_service(inventory) -> str:
    apps = inventory.hosts_in("app_servers")
    return inventory.resolved(sorted(apps)[0], "app_name") if apps else ""


@pytest.fixture(scope="session")
def upstreams(inventory, peer, app_port):
    """{app server: address}; each must serve app_port (the app tier)."""
    servers = {name: inventory.address(name) for name in inventory.hosts_in("app_servers")}
    assert servers, "no app_servers in the inventory"
    # Under the "app" lock: an app server taken out by a test in another
    # worker (a rolling deploy, a stopped or hung service: each holds the
    # lock until every server is back) is never mistaken for a missing app
    # tier; a server restarting anyway gets a minute.
    with disruption_lock("app"):
        deadline = time.monotonic() + 60
        while True:
            closed = [name for name, address in servers.items()
                      if tcp_probe(peer(name), address, app_port, timeout=2) != "open"]
            if not closed or time.monotonic() > deadline:
                break
            time.sleep(2)
    assert not closed, f"nothing serves {app_port} on {closed}: converge the app tier (playbooks/app.yml)"
    return servers


@pytest.fixture
def lb(host, inventory, upstreams, platform_ca):
    name = _name(host)
    names = inventory.resolved(name, "_platform_lb_server_names")
    return {
        "name": name,
        "address": inventory.address(name),
        "server_name": names[0],
        "port": int(inventory.resolved(name, "_platform_lb_https_port")),
        "engine": inventory.resolved(name, "platform_loadbalancer_engine"),
        "ca": platform_ca,
        "upstreams": upstreams,
    }


@pytest.fixture
def lb_disruption():
    """Disruptive load-balancer tests take turns: stopping lb1's engine to move
    the shared address would fail a load test against lb1 on the other worker."""
    with disruption_lock("lb"):
        yield


@pytest.fixture
def app_disruption(lb_disruption):
    """A load test that takes an app server out: the "app" lock too (after
    "lb", the order every test takes them in), so that no other test has an
    app server out meanwhile."""
    with disruption_lock("app"):
        yield


# --- a real HTTPS client (controller) -----------------------------------------

def _tls_context(ca, minimum=None, maximum=None):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    if minimum:
        ctx.minimum_version = minimum
    if maximum:
        ctx.maximum_version = maximum
    return ctx


def _get(lb, path="/", headers=None, method="GET", body=None):
    """HTTP/1.1 over TLS to the LB's address with the public name as SNI/Host."""
    ctx = _tls_context(lb["ca"])
    ctx.set_alpn_protocols(["http/1.1"])
    conn = http.client.HTTPSConnection(lb["address"], lb["port"], context=ctx, timeout=15)
    # SNI and certificate check against the public name, TCP to the address.
    conn.sock = ctx.wrap_socket(socket.create_connection((lb["address"], lb["port"]), timeout=15),
                                server_hostname=lb["server_name"])
    hdrs = {"Host": lb["server_name"], **(headers or {})}
    conn.request(method, path, body=body, headers=hdrs)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def _handshake(lb, minimum=None, maximum=None):
    ctx = _tls_context(lb["ca"], minimum, maximum)
    if maximum is not None and maximum < ssl.TLSVersion.TLSv1_2:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    with socket.create_connection((lb["address"], lb["port"]), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=lb["server_name"]) as tls:
            return tls.version(), tls.selected_alpn_protocol()


def _app_log_entry(peer, upstreams, app_service, request_id, seconds=20):
    """The app's JSON access-log entry of one request, from whichever app
    server logged it: (server, entry)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        for name in upstreams:
            app = peer(name)
            with app.sudo():
                out = app.run(f"journalctl -u {app_service} --since -5min -o cat --no-pager")
            for line in out.stdout.splitlines():
                if request_id in line and line.startswith("{"):
                    entry = json.loads(line)
                    if entry.get("request_id") == request_id and entry.get("message") == "request":
                        return name, entry
        time.sleep(1)
    raise AssertionError(f"no app server logged request {request_id}")


def test_https_through_the_load_balancer(lb, peer, app_service):
    status, headers, body = _get(lb, "/health")
    assert status == 200, body[:300]
    assert json.loads(body)["instance"] in lb["upstreams"]
    # Without one from the client, the LB makes up a request id.
    assert headers.get("x-request-id"), "no X-Request-ID generated"
    # The client's own id travels to the app, which logs it with the
    # client's address (X-Forwarded-For) and the scheme (X-Forwarded-Proto).
    rid = f"acceptance-{lb['name']}-{int(time.time() * 1000)}"
    status, headers, _ = _get(lb, "/search?q=forwarded", headers={"X-Request-ID": rid})
    assert status == 200 and headers.get("x-request-id") == rid
    server, entry = _app_log_entry(peer, lb["upstreams"], app_service, rid)
    assert entry["scheme"] == "https", entry
    assert entry["client"] not in (lb["address"], ""), f"{server} logged the LB, not the client: {entry}"


def test_tls_versions_and_http2(lb):
    version, alpn = _handshake(lb)
    assert version == "TLSv1.3"
    assert alpn == "h2", "HTTP/2 not negotiated"
    version, _ = _handshake(lb, maximum=ssl.TLSVersion.TLSv1_2)
    assert version == "TLSv1.2"
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        _handshake(lb, maximum=ssl.TLSVersion.TLSv1_1)


def test_only_the_chosen_engine_runs_and_starts_at_boot(lb, host):
    """The engine not chosen (platform_loadbalancer_engine) is stopped and
    disabled when installed, e.g. after an engine switch: it would hold the
    HTTP(S) ports and come back at the next boot."""
    other = {"nginx": "haproxy", "haproxy": "nginx"}[lb["engine"]]
    assert host.service(lb["engine"]).is_running and host.service(lb["engine"]).is_enabled
    state = host.run(f"systemctl is-active {other}; systemctl is-enabled {other}; echo rc=$?").stdout.split()
    assert state[0] != "active", f"{lb['name']}: {other} runs beside {lb['engine']}"
    assert state[1] in ("disabled", "masked", "rc=1") or "not-found" in " ".join(state), \
        f"{lb['name']}: {other} starts at boot ({state})"


def test_security_headers(lb):
    _, headers, _ = _get(lb, "/")
    assert re.match(r"max-age=\d{8,}", headers.get("strict-transport-security", ""))
    assert headers.get("x-content-type-options") == "nosniff"
    assert headers.get("x-frame-options", "").upper() in ("DENY", "SAMEORIGIN")
    assert headers.get("referrer-policy")
    assert headers.get("content-security-policy")
    assert not re.search(r"\d", headers.get("server", "")), f"server version leaked: {headers.get('server')}"


def test_http_redirects_to_https(lb):
    conn = http.client.HTTPConnection(lb["address"], 80, timeout=10)
    conn.request("GET", "/some/path?q=1", headers={"Host": lb["server_name"]})
    resp = conn.getresponse()
    assert resp.status == 301, f"{resp.status} (both engines answer 301 Moved Permanently)"
    assert resp.getheader("Location") == f"https://{lb['server_name']}/some/path?q=1"


def test_body_size_limit(lb):
    """A request announcing a body over the limit is refused before it is read."""
    ctx = _tls_context(lb["ca"])
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection((lb["address"], lb["port"]), timeout=15) as raw:
        with ctx.wrap_socket(raw, server_hostname=lb["server_name"]) as tls:
            tls.sendall((f"POST /documents HTTP/1.1\r\nHost: {lb['server_name']}\r\n"
                         "Content-Type: application/octet-stream\r\n"
                         f"Content-Length: {1024 ** 3}\r\n\r\n").encode() + b"x" * 1024)
            status_line = tls.recv(4096).split(b"\r\n", 1)[0].decode()
    assert " 413 " in f"{status_line} ", status_line


# sslyze --mozilla_config=intermediate against the HTTPS port (compliant, nothing outside
# the platform's TLS profile): test_tls_profile.py, with OpenSearch's HTTP.


# --- from a lab host: rate limit, private pages -------------------------------

def _curl(src, url, extra=""):
    return src.run(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 10 {extra} '{url}'").stdout.strip()


def test_rate_limit_answers_429(lb, inventory, peer):
    """A client over its rate gets 429 (a lab host: limited like any client)."""
    client = peer(inventory.hosts_in("app_servers")[0])
    # 300 requests from one curl, 50 at a time (URL globbing gives distinct
    # query strings on the cheapest path).
    out = client.run(
        f"curl -sk --parallel --parallel-max 50 --max-time 20 "
        f"--resolve {lb['server_name']}:{lb['port']}:{lb['address']} -o /dev/null -w '%{{http_code}}\\n' "
        f"'https://{lb['server_name']}:{lb['port']}/live?rate-probe=[1-300]'").stdout.split()
    assert "429" in out, f"no 429 among {len(out)} fast requests: {sorted(set(out))}"
    assert "200" in out, "every request was refused"


def test_status_pages_private_and_authenticated(lb, inventory, peer):
    monitor = peer(inventory.hosts_in("monitoring")[0])
    private = f"http://{lb['address']}:8404/metrics"
    assert _curl(monitor, private) == "401"
    password = inventory.secret(lb["name"], f"lb_{lb['engine']}_stats_password")
    assert password and "{{" not in password, "stats password not found in the inventory"
    metrics = monitor.run(f"curl -sf --max-time 10 -u 'stats:{password}' '{private}'")
    assert metrics.rc == 0, metrics.stderr
    assert re.search(r"^(nginx|haproxy)_\w+", metrics.stdout, re.M), metrics.stdout[:500]
    # Nothing of it on the public listener (what answers there is the app).
    for path in ("/metrics", "/stub_status", "/stats"):
        _, _, body = _get(lb, path)
        text = body.decode(errors="replace")
        assert not re.search(r"^(nginx|haproxy)_\w+|Active connections|Statistics Report", text, re.M), path


def test_json_access_log(host, lb):
    _get(lb, "/log-probe", headers={"X-Request-ID": "acceptance-log-probe"})
    time.sleep(1)
    with host.sudo():
        if lb["engine"] == "nginx":
            out = host.check_output("grep -h acceptance-log-probe /var/log/nginx/access.json.log | tail -n1")
        else:
            out = host.check_output("journalctl -u haproxy --since -5min -o cat | grep acceptance-log-probe | tail -n1")
    record = json.loads(out[out.index("{"):])
    assert "acceptance-log-probe" in json.dumps(record)


# --- bounded load: a hung app server and a reload --------------------------------

@pytest.mark.disruptive
def test_a_hung_app_server_loses_no_request(lb, peer, app_service, app_disruption):
    """One app server hangs under load for 15 s (every process of its unit
    stopped with SIGSTOP: the kernel still accepts connections, nothing
    answers): zero failed requests, none slower than 3 s, and it gets
    traffic again once it answers. (A clean stop and start of each server
    under load is the rolling deploy's, test_app.py.)"""
    victim = sorted(lb["upstreams"])[-1]
    app = peer(victim)
    load = start_hey(lb, 25)
    time.sleep(4)
    with app.sudo():
        app.run_expect([0], f"systemctl kill --signal=SIGSTOP {app_service}")
        try:
            time.sleep(15)
        finally:
            app.run_expect([0], f"systemctl kill --signal=SIGCONT {app_service}")
            resumed = time.monotonic()
    result = hey_result(load)
    deadline, seen = time.monotonic() + 60, set()
    while victim not in seen and time.monotonic() < deadline:
        seen.add(json.loads(_get(lb, "/health")[2])["instance"])
    back = time.monotonic() - resumed
    record(f"hung app server ({victim} 15 s), via {lb['name']} {lb['engine']}", **load_figures(result),
           recovered=back if victim in seen else None, note="recovered: it gets traffic again")
    assert result.clean(), result.output
    assert result.slowest < 3, result.output
    assert victim in seen, f"{victim} received no traffic after it answered again (saw {seen})"


@pytest.mark.disruptive
def test_reload_under_load_loses_no_request(lb, app_port, lb_disruption):
    """Changing the upstream list (an Ansible run, applied by reload) under load."""
    root = os.path.abspath(os.path.join(HERE, "..", ".."))
    inventory_path = os.environ.get("ANSIBLE_INVENTORY") or os.path.join(root, "inventories", "lab")
    var = f"lb_{lb['engine']}_upstream_servers"
    first = sorted(lb["upstreams"])[0]
    fewer = [{"name": first, "address": lb["upstreams"][first], "port": app_port}]

    def converge(extra):
        return subprocess.run(
            ["ansible-playbook", "-i", inventory_path, "playbooks/loadbalancers.yml",
             "--limit", lb["name"], "--tags", f"lb_{lb['engine']}", *extra],
            cwd=root, capture_output=True, text=True, timeout=900)

    load = start_hey(lb, 600)
    time.sleep(3)
    shrink = converge(["-e", json.dumps({var: fewer})])
    restore = converge([])
    time.sleep(3)
    result = hey_result(load, stop=True)
    record(f"upstream change applied by reload, {lb['name']} {lb['engine']}", **load_figures(result))
    assert shrink.returncode == 0, shrink.stdout[-3000:]
    assert restore.returncode == 0, restore.stdout[-3000:]
    assert re.search(r"changed=[1-9]", shrink.stdout), "the upstream change was not applied"
    assert re.search(r"changed=[1-9]", restore.stdout), "the upstream list was not restored"
    assert result.clean(), result.output


# --- the shared address (roles/keepalived) -------------------------------------

def _vip(inventory):
    lbs = inventory.hosts_in("loadbalancers")
    return (inventory.resolved(lbs[0], "keepalived_virtual_ip") or "") if len(lbs) > 1 else ""


def _vip_holders(inventory, peer, vip):
    return [name for name in inventory.hosts_in("loadbalancers")
            if f" {vip}/" in peer(name).check_output("ip -4 -o addr show")]


def _vip_lb(lb, vip):
    return {**lb, "address": vip}


def _shared_address(inventory):
    """The shared address (tests marked once: on the first load balancer's item)."""
    vip = _vip(inventory)
    if not vip:
        not_configured("no keepalived_virtual_ip (or fewer than two load balancers) in this inventory")
    return vip


@pytest.mark.once
def test_shared_address_held_by_one_lb_and_serves_https(host, inventory, peer, lb):
    vip = _shared_address(inventory)
    for name in inventory.hosts_in("loadbalancers"):
        other = peer(name)
        assert other.service("keepalived").is_running, f"keepalived on {name}"
        # VRRP from the other load balancers only (UFW, protocol 112).
        rules = other.check_output("ufw status")
        for peer_name in inventory.hosts_in("loadbalancers"):
            if peer_name != name:
                assert re.search(rf"ALLOW\s+{re.escape(inventory.address(peer_name))}/vrrp", rules), rules
    deadline = time.time() + 30
    while len(_vip_holders(inventory, peer, vip)) != 1 and time.time() < deadline:
        time.sleep(1)
    holders = _vip_holders(inventory, peer, vip)
    assert len(holders) == 1, f"{vip} held by {holders}"
    status, headers, _ = _get(_vip_lb(lb, vip), "/")
    assert status == 200 and "strict-transport-security" in headers


@pytest.mark.disruptive
@pytest.mark.once
def test_shared_address_moves_when_the_holders_engine_stops(host, inventory, peer, lb, lb_disruption):
    """The holder's engine stops: the address moves to a peer within seconds and
    HTTPS on it answers again; the engine's return does not take it back
    (no preemption). Then the address is moved back (the peer's keepalived
    stops and starts), as it was before the test."""
    vip = _shared_address(inventory)
    holders = _vip_holders(inventory, peer, vip)
    assert len(holders) == 1, f"{vip} held by {holders}"
    first = holders[0]
    engine = inventory.resolved(first, "platform_loadbalancer_engine")
    first_host = peer(first)
    vip_lb = _vip_lb(lb, vip)

    def wait_for_new_holder(not_on, seconds=30):
        deadline = time.time() + seconds
        while time.time() < deadline:
            now = _vip_holders(inventory, peer, vip)
            if len(now) == 1 and now[0] != not_on:
                return now[0], time.time()
            time.sleep(0.2)
        pytest.fail(f"{vip} still held by {_vip_holders(inventory, peer, vip)} after {seconds} s")

    def https_ok():
        try:
            return _get(vip_lb, "/")[0] == 200
        except OSError:
            return False

    second = None
    try:
        with first_host.sudo():
            stopped = time.time()
            first_host.run_expect([0], f"systemctl stop {engine}")
            second, moved = wait_for_new_holder(first)
            deadline = time.time() + 30
            while not https_ok():
                assert time.time() < deadline, f"HTTPS on {vip} does not answer after the move to {second}"
                time.sleep(0.2)
            answered = time.time()
            print(f"shared address: {first} ({engine}) stopped; {second} held {vip} after "
                  f"{moved - stopped:.1f} s, HTTPS answered after {answered - stopped:.1f} s")
            record(f"the shared address's holder loses its engine ({first} {engine})", recovered=answered - stopped,
                   note=f"recovered: HTTPS answers on the shared address ({second} held it after {moved - stopped:.1f} s)")
            first_host.run_expect([0], f"systemctl start {engine}")
        time.sleep(6)
        assert _vip_holders(inventory, peer, vip) == [second], "the returning load balancer took the address back"
        assert https_ok()
    finally:
        with first_host.sudo():
            first_host.run(f"systemctl start {engine}")
        if second:
            # Back to the state before the test: the peer gives the address up.
            second_host = peer(second)
            with second_host.sudo():
                second_host.run("systemctl stop keepalived")
                try:
                    wait_for_new_holder(second)
                finally:
                    second_host.run("systemctl start keepalived")
    assert _vip_holders(inventory, peer, vip) == [first]
