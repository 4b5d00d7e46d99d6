"""App servers (roles/app deploying the reference service in app/).

Real clients only: the app checked on each app server from itself, searches
through every load balancer over HTTPS from the controller (the lab CA, the
public name as SNI), the search page in Debian's headless Chromium, bounded
load with hey, and site's own playbook for the rolling deploys.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.parse

import pytest
from disruption import disruption_lock
from load import hey_result, start_hey
from resilience import load_figures, record

pytestmark = pytest.mark.groups("app_servers")

HERE = os.path.dirname(__file__)
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
ARTIFACTS = os.environ.get("SEARCHPLAT_ARTIFACTS") or os.path.join(ROOT, "artifacts")
# A title of the seed corpus (app/src/searchplat_app/data/seed_documents.json)
# and a query that finds it.
SEED_QUERY = "inverted index"
SEED_TITLE = "Inverted index basics"


def _name(host) -> str:
    return host.backend.get_hostname()


# --- fixtures ----------------------------------------------------------------

@pytest.fixture(scope="session")
def app_cfg(inventory):
    apps = sorted(inventory.hosts_in("app_servers"))
    assert apps, "no app_servers in the inventory"
    return {
        "port": int(inventory.resolved(apps[0], "app_port")),
        "service": inventory.resolved(apps[0], "app_name"),
        "ready_path": inventory.resolved(apps[0], "app_ready_path"),
    }


def https(lb, path, timeout=15, headers=None):
    """GET over TLS to the LB's address, SNI and Host = the public name."""
    ctx = ssl.create_default_context(cafile=lb["ca"])
    raw = socket.create_connection((lb["address"], lb["port"]), timeout=timeout)
    conn = http.client.HTTPSConnection(lb["server_name"], lb["port"], context=ctx, timeout=timeout)
    conn.sock = ctx.wrap_socket(raw, server_hostname=lb["server_name"])
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def local_get(host, address, port, path):
    """(status, body) of a GET from the app server itself (python3, no curl needed)."""
    code = (
        "import sys,urllib.request,urllib.error\n"
        "try:\n"
        f"    r=urllib.request.urlopen('http://{address}:{port}{path}',timeout=10);print(r.status);print(r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code);print(e.read().decode())\n"
    )
    out = host.check_output("python3 -c %s", code)
    status, _, body = out.partition("\n")
    return int(status), body


# --- the service on every app server -------------------------------------------

def test_service_running_and_ready(host, inventory, app_cfg):
    name = _name(host)
    svc = host.service(app_cfg["service"])
    assert svc.is_running and svc.is_enabled
    address = inventory.address(name)
    for path in ("/health", "/live", app_cfg["ready_path"]):
        status, body = local_get(host, address, app_cfg["port"], path)
        assert status == 200, f"{path}: {status} {body[:300]}"
    status, body = local_get(host, address, app_cfg["port"], "/health")
    assert json.loads(body)["instance"] == host.check_output("hostname")
    status, body = local_get(host, address, app_cfg["port"], "/metrics")
    assert status == 200 and "searchplat_http_requests_total" in body


def test_service_runs_unprivileged_and_confined(host, app_cfg):
    props = host.check_output(
        "systemctl show %s -p User -p NoNewPrivileges -p ProtectSystem -p PrivateTmp -p MainPID",
        app_cfg["service"])
    values = dict(line.split("=", 1) for line in props.splitlines())
    assert values["User"] not in ("", "root")
    assert values["NoNewPrivileges"] == "yes"
    assert values["ProtectSystem"] == "strict"
    assert values["PrivateTmp"] == "yes"
    # gunicorn's master and its workers all run as that user.
    users = host.check_output("ps -o user= --ppid %s --pid %s", values["MainPID"], values["MainPID"])
    assert set(users.split()) == {values["User"]}


# --- the whole tier, through the load balancers --------------------------------

@pytest.mark.once  # the whole tier, through the load balancers
def test_search_through_every_lb_returns_seeded_documents(host, inventory, lbs):
    query = urllib.parse.urlencode({"q": SEED_QUERY, "size": 5})
    for lb in lbs:
        status, headers, body = https(lb, f"/search?{query}", headers={"X-Request-ID": "acc-search-1"})
        assert status == 200, f"{lb['name']}: {status} {body[:300]!r}"
        data = json.loads(body)
        assert data["total"] > 0, data
        titles = [r["title"] for r in data["results"]]
        assert SEED_TITLE in titles, f"{lb['name']}: {titles}"
        assert headers.get("x-request-id") == "acc-search-1"
        assert headers.get("strict-transport-security"), "security headers missing on the app's answers"


@pytest.mark.once  # the whole tier, through the load balancers
def test_requests_reach_every_app_server(host, inventory, lbs):
    apps = set(inventory.hosts_in("app_servers"))
    for lb in lbs:
        seen, deadline = set(), time.time() + 30
        while seen != apps and time.time() < deadline:
            status, _, body = https(lb, "/health")
            assert status == 200
            seen.add(json.loads(body)["instance"])
        assert seen == apps, f"{lb['name']} sent traffic to {sorted(seen)} only"


@pytest.mark.parametrize("query", [
    "q=" + "a" * 1000,                 # longer than the bound
    "q=%00drop",                       # control character
    "q=index&size=100000",             # page size above the bound
    "q=index&page=-1",                 # page below 1
    "q=index&page=abc",                # not a number
    "q=",                              # empty
])
@pytest.mark.once  # the whole tier, through the load balancers
def test_bad_queries_get_a_json_4xx(host, inventory, lbs, query):
    status, headers, body = https(lbs[0], f"/search?{query}")
    # The app's own validation answers each of these (not the LB, not a crash).
    assert status == 400, f"{query[:40]}: {status} {body[:300]!r}"
    assert headers.get("content-type", "").startswith("application/json")
    data = json.loads(body)
    assert data.get("error") == "bad_request", data
    assert "Traceback" not in body.decode()


@pytest.mark.once  # the whole tier, through the load balancers
def test_search_page_in_headless_chromium(host, inventory, lbs):
    """The HTML page at / searches through the LB (its JavaScript calls
    /search) and shows the seeded result; the screenshot is kept."""
    chromium = shutil.which("chromium")
    certutil = shutil.which("certutil")
    assert chromium and certutil, "chromium and libnss3-tools: scripts/lib/bootstrap.sh installs them"
    lb = lbs[0]
    url = f"https://{lb['server_name']}:{lb['port']}/?" + urllib.parse.urlencode({"q": SEED_QUERY})
    home = tempfile.mkdtemp(prefix="searchplat-chromium-")
    nssdb = os.path.join(home, ".pki", "nssdb")
    os.makedirs(nssdb)
    # Chromium trusts the lab CA through its own NSS database, like a
    # browser whose user imported the company CA: no certificate errors ignored.
    subprocess.run([certutil, "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True)
    subprocess.run([certutil, "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "searchplat-lab-ca",
                    "-i", lb["ca"]], check=True)
    os.makedirs(ARTIFACTS, exist_ok=True)
    shot = os.path.join(ARTIFACTS, "app-search-page.png")
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
              f"--user-data-dir={os.path.join(home, 'profile')}",
              f"--host-resolver-rules=MAP {lb['server_name']} {lb['address']}",
              "--virtual-time-budget=15000", "--window-size=1200,900"]
    env = {**os.environ, "HOME": home}
    dom = subprocess.run(common + ["--dump-dom", url], env=env, capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert SEED_TITLE in re.sub(r"<[^>]+>", "", dom.stdout), dom.stdout[-3000:]
    if os.path.exists(shot):
        os.unlink(shot)
    pic = subprocess.run(common + [f"--screenshot={shot}", url], env=env, capture_output=True, text=True,
                         timeout=120)
    assert pic.returncode == 0 and os.path.getsize(shot) > 10000, pic.stderr[-2000:]
    shutil.rmtree(home, ignore_errors=True)


# --- readiness follows OpenSearch ------------------------------------------------

@pytest.mark.disruptive
@pytest.mark.once  # one app server is enough (the others keep serving)
def test_ready_is_503_while_opensearch_is_unreachable(host, inventory, app_cfg):
    """Block this app server's traffic to OpenSearch: /ready answers 503 (the
    LBs take it out), /health still 200; unblock: /ready 200 again."""
    address = inventory.address(_name(host))
    rule = "OUTPUT -p tcp --dport 9200 -j REJECT --reject-with tcp-reset"

    def ready_becomes(wanted):
        deadline, status, body = time.time() + 60, 0, ""
        while time.time() < deadline:
            status, body = local_get(host, address, app_cfg["port"], app_cfg["ready_path"])
            if status == wanted:
                break
            time.sleep(2)
        return status, body

    # An app server out of rotation: the "app" lock (one at a time); the load
    # tests through the load balancers go on beside it (their retries).
    with disruption_lock("app"), host.sudo():
        host.run_expect([0], f"iptables -I {rule}")
        try:
            status, body = ready_becomes(503)
            assert status == 503, f"/ready still {status} with OpenSearch blocked"
            assert json.loads(body)["status"] == "not_ready"
            assert local_get(host, address, app_cfg["port"], "/health")[0] == 200
        finally:
            host.run(f"iptables -D {rule}")
        status, _ = ready_becomes(200)
        assert status == 200, f"/ready {status} after OpenSearch became reachable again"


# --- rolling deploys through site's own playbook ----------------------------------

def _app_variant(version: str, broken: bool = False) -> str:
    """A copy of app/ released as `version`; broken: /ready never answers 200
    (it imports and starts fine: only the readiness wait can catch it)."""
    dest = os.path.join(tempfile.mkdtemp(prefix="searchplat-app-"), "app")
    shutil.copytree(os.path.join(ROOT, "app"), dest,
                    ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", ".pytest_cache"))
    pyproject = os.path.join(dest, "pyproject.toml")
    with open(pyproject) as f:
        text = f.read()
    with open(pyproject, "w") as f:
        f.write(re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', text, count=1))
    if broken:
        api = os.path.join(dest, "src", "searchplat_app", "api.py")
        with open(api) as f:
            text = f.read()
        assert "    if result.ready:\n" in text
        with open(api, "w") as f:
            f.write(text.replace("    if result.ready:\n", "    if False:  # deliberately broken release\n", 1))
    return dest


def _deploy(source: str | None):
    extra = [] if source is None else ["-e", json.dumps({
        "app_source": source, "app_requirements_file": os.path.join(source, "requirements.lock")})]
    inventory_path = os.environ.get("ANSIBLE_INVENTORY") or os.path.join(ROOT, "inventories", "lab")
    return subprocess.run(["ansible-playbook", "-i", inventory_path, "playbooks/app.yml", *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=1200)


def _current_release(peer, name) -> str:
    return os.path.basename(peer(name).check_output("readlink /opt/searchplat-app/current"))


@pytest.mark.disruptive
@pytest.mark.once  # the whole tier, through the load balancers
def test_rolling_deploy_and_rollback_under_load(host, inventory, lbs, peer):
    """Under search load through both LBs: a new release goes out one server
    at a time with 0 failed requests; then a release whose /ready never
    answers 200 is rolled back on the first server, the run stops there
    (the others keep their release) and still no request fails; finally the
    checkout's own release is deployed again."""
    apps = sorted(inventory.hosts_in("app_servers"))
    before = {name: _current_release(peer, name) for name in apps}
    with disruption_lock("lb"), disruption_lock("app"):
        # At most 900 s x 2 workers x 10 searches/s per LB; stopped once the deploys end.
        loads = [start_hey(lb, 900, "/search?q=index", workers=2, rate_per_worker=10) for lb in lbs]
        try:
            good = _deploy(_app_variant("0.1.0+acceptance1"))
            after_good = {name: _current_release(peer, name) for name in apps}
            broken = _deploy(_app_variant("0.1.0+acceptance2", broken=True))
            after_broken = {name: _current_release(peer, name) for name in apps}
        finally:
            results = [hey_result(proc, stop=True) for proc in loads]
        restore = _deploy(None)
    for lb, result in zip(lbs, results):
        record(f"rolling deploy, then a refused release rolled back, via {lb['name']}", **load_figures(result))
    assert good.returncode == 0, good.stdout[-4000:]
    assert all(r.startswith("0.1.0+acceptance1-") for r in after_good.values()), after_good
    assert after_good != before
    assert broken.returncode != 0, "the broken release was not refused"
    assert "did not become ready" in broken.stdout and "Rolled back to 0.1.0+acceptance1-" in broken.stdout, \
        broken.stdout[-4000:]
    # serial: 1 and max_fail_percentage: 0: the first server was rolled back,
    # the others never saw the broken release.
    assert after_broken == after_good, after_broken
    for lb, result in zip(lbs, results):
        assert result.clean(), f"{lb['name']}: {result.output[-2500:]}"
    assert restore.returncode == 0, restore.stdout[-4000:]
    assert {name: _current_release(peer, name) for name in apps} == before
