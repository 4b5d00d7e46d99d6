"""Central logging (roles/rsyslog on every host, the relays and the log store
on the logging group).

Every host: rsyslog runs with this platform's configuration. Once, against
the lab: a line written on each host is searchable in the log store, parsed
into fields, within a bounded time; a request id followed from the load
balancers' logs to the app's; an sshd failure found by source; the writer
user's limits and anonymous refusal; a certificate from another CA refused;
retention deletes what is past it. Disruptive: nothing is lost while the
relay and then the log store are down for two minutes each (every marker
arrives exactly once); a wrong writer password turns the store's refusal
alert on, and off again once fixed.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
from disruption import active_alerts, alert_report, disruption_lock, wait_until
from resilience import record

pytestmark = pytest.mark.groups("all")

SEARCH_WINDOW = 120  # seconds a shipped line may take to become searchable


def _name(host) -> str:
    return host.backend.get_hostname()


class LogStore:
    """The log store's HTTP API from the controller (the lab opens its port to
    the controller, as to an operator's bastion), TLS verified."""

    def __init__(self, inventory, ca_file):
        self.inventory = inventory
        relays = inventory.hosts_in("logging")
        assert relays, "no host in the logging group"
        store = relays if inventory.resolved(relays[0], "platform_logging_store") == "dedicated" \
            else inventory.hosts_in("opensearch")
        self.url = f"https://{inventory.address(store[0])}:{inventory.resolved(store[0], 'opensearch_http_port')}"
        self.ctx = ssl.create_default_context(cafile=ca_file)
        relay = relays[0]
        self.users = {
            "reader": (inventory.resolved(relay, "platform_logging_reader_user"),
                       inventory.secret(relay, "platform_logging_reader_password")),
            "writer": (inventory.resolved(relay, "platform_logging_writer_user"),
                       inventory.secret(relay, "platform_logging_writer_password")),
            "admin": ("admin", inventory.secret(store[0], "opensearch_admin_password")),
        }

    def call(self, method, path, body=None, user="reader"):
        headers = {"Content-Type": "application/json"}
        if user:
            login, password = self.users[user]
            headers["Authorization"] = "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return err.code, json.loads(raw or b"{}")
            except ValueError:
                return err.code, {"raw": raw[:200].decode(errors="replace")}

    def find(self, query, size=100, index="logs-*"):
        status, body = self.call("POST", f"/{index}/_search?ignore_unavailable=true",
                                 {"size": size, "query": query})
        assert status == 200, (status, body)
        return [h["_source"] for h in body["hits"]["hits"]]

    def wait_for(self, query, count=1, seconds=SEARCH_WINDOW, index="logs-*"):
        deadline = time.monotonic() + seconds
        hits = []
        while time.monotonic() < deadline:
            hits = self.find(query, size=max(count, 100), index=index)
            if len(hits) >= count:
                return hits
            time.sleep(3)
        return hits


@pytest.fixture(scope="session")
def logstore(inventory, platform_ca):
    return LogStore(inventory, platform_ca)


# --- every host ------------------------------------------------------------------------------

def test_rsyslog_runs_with_the_platforms_configuration(host):
    svc = host.service("rsyslog")
    assert svc.is_running and svc.is_enabled
    conf = host.file("/etc/rsyslog.conf")
    assert conf.user == "root" and "omrelp" in conf.content_string and "searchplat_forward" in conf.content_string
    with host.sudo():
        assert host.run("rsyslogd -N1 -f /etc/rsyslog.conf").rc == 0


# --- once ------------------------------------------------------------------------------------

@pytest.mark.once
def test_a_line_from_every_host_is_searchable_with_its_fields(host, inventory, peer, logstore):
    marker = f"acceptance-{uuid.uuid4().hex[:12]}"
    hosts = inventory.all_hosts()
    for name in hosts:
        peer(name).check_output(f"logger -t searchplat-acceptance '{marker} from {name}'")
    # The peers run logger through sudo, which logs the command line too.
    hits = logstore.wait_for({"bool": {"filter": [{"match_phrase": {"message": marker}},
                                                  {"term": {"program": "searchplat-acceptance"}}]}},
                             count=len(hosts))
    found = {h["host"] for h in hits}
    assert found == set(hosts), f"missing after {SEARCH_WINDOW} s: {sorted(set(hosts) - found)}"
    tiers = ["loadbalancers", "app_servers", "opensearch", "monitoring", "logging", "backup", "snapshot_server"]
    for hit in hits:
        groups = inventory.groups_of(hit["host"])
        assert hit["tier"] == next(t for t in tiers if t in groups), hit
        assert hit["program"] == "searchplat-acceptance" and hit["source"] == "system" and "@timestamp" in hit


@pytest.mark.once
def test_a_request_is_followed_from_the_load_balancer_to_the_app(host, inventory, peer, logstore):
    """One request per engine with a request id of the test's: the same id in
    the load balancer's access log (nginx: its JSON file; HAProxy: its JSON
    line in the journal) and in the app's JSON log."""
    for lb in inventory.hosts_in("loadbalancers"):
        engine = inventory.resolved(lb, "platform_loadbalancer_engine")
        names = inventory.resolved(lb, "_platform_lb_server_names")
        port = inventory.resolved(lb, "_platform_lb_https_port")
        request_id = f"acc-{uuid.uuid4().hex[:16]}"
        probe = peer(inventory.hosts_in("monitoring")[0]).run(
            f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 15 --cacert /etc/ssl/searchplat/ca.crt "
            f"--resolve {names[0]}:{port}:{inventory.address(lb)} -H 'X-Request-ID: {request_id}' "
            f"'https://{names[0]}:{port}/search?q=logging'")
        assert probe.stdout.strip() == "200", (lb, probe.stdout, probe.stderr)
        lb_hits = logstore.wait_for({"bool": {"filter": [{"term": {"json.request_id": request_id}},
                                                         {"term": {"host": lb}}]}})
        assert lb_hits and lb_hits[0]["source"] == engine, (lb, engine, lb_hits)
        app_hits = logstore.wait_for({"bool": {"filter": [{"term": {"json.request_id": request_id}},
                                                          {"term": {"source": "app"}}]}})
        assert app_hits, f"{request_id} not in the app's log"
        assert app_hits[0]["host"] in inventory.hosts_in("app_servers")
        # Numbers are numbers: the status and sizes aggregate.
        status, body = logstore.call("POST", "/logs-*/_search", {
            "size": 0, "query": {"term": {"json.request_id": request_id}},
            "aggs": {"status": {"max": {"field": "json.status"}}}})
        assert status == 200 and body["aggregations"]["status"]["value"] == 200, body


@pytest.mark.once
def test_an_sshd_failure_is_found_by_its_source(host, inventory, peer, logstore):
    target = inventory.hosts_in("app_servers")[0]
    origin = inventory.hosts_in("monitoring")[0]
    user = f"nobody{uuid.uuid4().hex[:6]}"
    # ssh exits 255 on the refusal, which testinfra's SSH backend raises on.
    refused = peer(origin).run(
        "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 "
        f"{user}@{inventory.address(target)} true; echo rc=$?")
    assert "rc=255" in refused.stdout, refused.stdout + refused.stderr
    hits = logstore.wait_for({"bool": {"filter": [{"term": {"source": "auth"}}, {"term": {"host": target}},
                                                  {"match_phrase": {"message": user}}]}})
    assert hits, f"the failed login of {user} on {target} is not in logs-auth-*"
    assert any(inventory.address(origin) in h["message"] for h in hits), \
        f"no line names the source address {inventory.address(origin)}: {[h['message'] for h in hits]}"


@pytest.mark.once
def test_the_log_store_holds_the_logs_template(host, logstore):
    status, body = logstore.call("GET", "/_index_template/searchplat-logs", user="admin")
    assert status == 200, body
    (template,) = body["index_templates"]
    assert template["index_template"]["index_patterns"] == ["logs-*"], template


@pytest.mark.once
def test_the_writer_writes_logs_only_and_strangers_get_nothing(host, logstore):
    status, _ = logstore.call("POST", "/logs-*/_search", {"size": 1}, user="writer")
    assert status == 403, "the writer may search"
    status, _ = logstore.call("DELETE", "/logs-canary-*", user="writer")
    assert status == 403, "the writer may delete"
    status, _ = logstore.call("POST", "/other-index/_doc", {"x": 1}, user="writer")
    assert status == 403, "the writer may write outside logs-*"
    status, _ = logstore.call("GET", "/logs-*/_search", user=None)
    assert status == 401, "an anonymous search is not refused"


@pytest.mark.once
def test_a_certificate_from_another_ca_cannot_ship(host, inventory, peer):
    """A client certificate from another CA: the relay ends the handshake with
    a TLS alert (s_client keeps its input open for 2 s to read it; with the
    host's own certificate there is none)."""
    relay = inventory.hosts_in("logging")[0]
    port = inventory.resolved(relay, "rsyslog_relay_port")
    client = peer(inventory.hosts_in("app_servers")[0])
    with client.sudo():
        result = client.run(
            "set -e; d=$(mktemp -d); cd $d; "
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout k -out c -days 1 "
            f"-subj /CN={_name(client)} 2>/dev/null; "
            f"out=$( (sleep 2; echo) | timeout 15 openssl s_client -connect {inventory.address(relay)}:{port} "
            "-cert c -key k -CAfile /etc/ssl/searchplat/ca.crt 2>&1) || true; rm -rf $d; echo \"$out\" | tail -n 30")
    out = result.stdout
    assert "alert" in out.lower() and "RELP" not in out, out


@pytest.mark.once
def test_retention_deletes_indices_past_it_and_keeps_the_rest(host, inventory, peer, logstore):
    relay = peer(inventory.hosts_in("logging")[0])
    old, today = "logs-acctest-2020.01.01", "logs-acctest-" + time.strftime("%Y.%m.%d", time.gmtime())
    for index in (old, today):
        status, body = logstore.call("PUT", f"/{index}", {"settings": {"number_of_replicas": 0}}, user="admin")
        assert status in (200, 400), body  # 400: it exists already
    with relay.sudo():
        result = relay.run("/usr/local/sbin/rsyslog-retention --config /etc/rsyslog-searchplat/retention.json")
    assert result.rc == 0, result.stdout + result.stderr
    assert f"deleted {old}" in result.stdout
    assert logstore.call("GET", f"/{old}", user="admin")[0] == 404
    assert logstore.call("GET", f"/{today}", user="admin")[0] == 200
    logstore.call("DELETE", f"/{today}", user="admin")


# --- disruptive --------------------------------------------------------------------------

@pytest.fixture
def logging_disruption():
    with disruption_lock("logging"):
        yield


@pytest.mark.disruptive
@pytest.mark.once
def test_nothing_is_lost_while_the_relay_and_then_the_store_are_down(host, inventory, peer, logstore, logging_disruption):
    """Hosts keep logging (one line every half second each) while the relay is
    down for a minute, then while the log store is down for a minute;
    after recovery every line is in the store exactly once."""
    relay = inventory.hosts_in("logging")[0]
    dedicated = inventory.resolved(relay, "platform_logging_store") == "dedicated"
    store_node = relay if dedicated else inventory.hosts_in("opensearch")[0]
    senders = [h for h in inventory.all_hosts() if h != relay][:4]
    marker = f"noloss-{uuid.uuid4().hex[:10]}"
    # sudo logs each batch's command line too: count logger's lines only.
    noloss = {"bool": {"filter": [{"match_phrase": {"message": marker}}, {"term": {"program": "searchplat-noloss"}}]}}
    stop = threading.Event()
    sent: dict[str, int] = {}

    def send(name):
        node, n = peer(name), 0
        while not stop.is_set():
            batch = " ; ".join(f"logger -t searchplat-noloss '{marker} {name} {n + i}'" for i in range(4))
            node.run(batch)
            n += 4
            time.sleep(2)
        sent[name] = n

    threads = [threading.Thread(target=send, args=(name,)) for name in senders]
    for t in threads:
        t.start()
    try:
        time.sleep(10)
        with peer(relay).sudo():
            peer(relay).check_output("systemctl stop rsyslog")
        time.sleep(60)
        with peer(relay).sudo():
            peer(relay).check_output("systemctl start rsyslog")
        time.sleep(20)
        with peer(store_node).sudo():
            peer(store_node).check_output("systemctl stop opensearch")
        time.sleep(60)
        with peer(store_node).sudo():
            peer(store_node).check_output("systemctl start opensearch")
        time.sleep(10)
    finally:
        stop.set()
        for t in threads:
            t.join()
        with peer(relay).sudo():
            peer(relay).run("systemctl start rsyslog")
        with peer(store_node).sudo():
            peer(store_node).run("systemctl start opensearch")
    total = sum(sent.values())
    # Everything queued on the hosts and the relay drains within minutes.
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status, body = logstore.call("POST", "/logs-*/_count", {"query": noloss})
        if status == 200 and body["count"] >= total:
            break
        time.sleep(10)
    hits = logstore.find(noloss, size=10000)
    lines = [h["message"].split(marker, 1)[1].strip() for h in hits]
    duplicates = len(lines) - len(set(lines))
    print(f"no-loss: {total} lines sent by {len(senders)} hosts, {len(set(lines))} distinct in the store, "
          f"{duplicates} duplicates")
    record("log relay down 60 s, then the log store down 60 s", written=total, found=len(set(lines)),
           note=f"written, found: log lines sent by {len(senders)} hosts, stored; {duplicates} stored twice")
    assert len(set(lines)) == total, f"{total - len(set(lines))} of {total} lines lost"
    assert duplicates == 0, f"{duplicates} lines stored twice"


@pytest.mark.disruptive
@pytest.mark.once
def test_a_wrong_writer_password_raises_the_refusal_alert(host, inventory, peer, logging_disruption):
    relay = peer(inventory.hosts_in("logging")[0])

    def firing():
        return active_alerts(inventory, peer, "LogStoreRefusingWrites")

    secret = "/etc/rsyslog-searchplat/opensearch-writer.password"
    with relay.sudo():
        relay.check_output(f"cp -a {secret} {secret}.acceptance && printf 'wrong-password-x' > {secret} "
                           "&& systemctl restart rsyslog")
    try:
        for i in range(20):
            relay.run(f"logger -t searchplat-acceptance 'refused write {i}'")
        assert wait_until(firing, 240), \
            "LogStoreRefusingWrites never reached Alertmanager: " + alert_report(inventory, peer, "LogStoreRefusingWrites")
    finally:
        with relay.sudo():
            relay.check_output(f"mv {secret}.acceptance {secret} && systemctl restart rsyslog")
    assert wait_until(lambda: not firing(), 900), \
        "LogStoreRefusingWrites did not resolve after the password was fixed: " + alert_report(inventory, peer, "LogStoreRefusingWrites")
