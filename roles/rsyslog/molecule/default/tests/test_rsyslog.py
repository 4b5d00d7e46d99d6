"""Verify the rsyslog role: shipping, relaying, parsing, queueing, refusals.

Two relays (relay1 10.237.0.11, relay2 10.237.0.12; each also ships) and a
shipper (10.237.0.21). The relays write every document they would send to
OpenSearch into /var/log/rsyslog/relay.json (rsyslog_relay_file_output), one
JSON object per line; the tests read those files. Every wait is a loop
bounded by a deadline.
"""

import json
import os
import re
import time
import uuid

import pytest
import testinfra

PREFIX = os.environ.get("MOLECULE_INSTANCE_PREFIX", "sp")
RELAY1, RELAY2, SHIPPER = (PREFIX + "-rsyslog-" + n for n in ("relay1", "relay2", "shipper"))
ADDRESS = {RELAY1: "10.237.0.11", RELAY2: "10.237.0.12", SHIPPER: "10.237.0.21"}
OUTPUT = "/var/log/rsyslog/relay.json"
TEXTFILE = "/var/lib/prometheus/node-exporter/rsyslog.prom"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")

testinfra_hosts = ["ansible://" + n for n in (RELAY1, RELAY2, SHIPPER)]


def _host(name):
    return testinfra.get_host("ansible://" + name, ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


@pytest.fixture(scope="module")
def hosts():
    return {name: _host(name) for name in (RELAY1, RELAY2, SHIPPER)}


def marker(kind):
    return "mol-%s-%s" % (kind, uuid.uuid4().hex[:12])


def docs(h, needle):
    """Documents in a relay's output whose raw line contains needle."""
    out = h.run("grep -F -- %s %s || true" % (json.dumps(needle), OUTPUT)).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wait_docs(hosts, needle, relays=(RELAY1, RELAY2), count=1, seconds=30):
    deadline = time.monotonic() + seconds
    while True:
        found = {r: docs(hosts[r], needle) for r in relays}
        if sum(len(v) for v in found.values()) >= count or time.monotonic() > deadline:
            return found
        time.sleep(1)


def rsyslog(h, action):
    # The socket too: journald forwards to it here (roles/baseline turns
    # that off on the platform), and a message there would start rsyslog.
    units = "syslog.socket rsyslog" if action == "stop" else "rsyslog"
    h.run_expect([0], "systemctl %s %s" % (action, units))


# --- every host -----------------------------------------------------------------

def test_service_and_configuration(host):
    assert host.package("rsyslog").is_installed and host.package("rsyslog-relp").is_installed
    svc = host.service("rsyslog")
    assert svc.is_running and svc.is_enabled
    check = host.run("rsyslogd -N1 -f /etc/rsyslog.conf")
    assert check.rc == 0, check.stderr
    conf = host.file("/etc/rsyslog.conf")
    assert conf.user == "root" and conf.mode == 0o644
    assert host.file("/etc/rsyslog-searchplat").mode == 0o700
    assert host.file("/var/spool/rsyslog").mode == 0o700
    text = conf.content_string
    # imjournal in, omrelp out over TLS with the relays' names checked, failover
    assert 'module(load="imjournal"' in text
    assert 'queue.filename="searchplat_forward"' in text and 'queue.saveOnShutdown="on"' in text
    if "relay" in host.backend.get_hostname():
        # a relay handles its own messages locally, never over RELP to itself
        assert 'type="omrelp"' not in text and "call searchplat_relay" in text
        assert 'type="imrelp"' in text and 'tls.permittedPeer=["relay1", "relay2", "shipper"]' in text
    else:
        assert text.count('type="omrelp"') == 2 and 'type="imrelp"' not in text
        assert 'tls.permittedPeer=["relay1"]' in text and 'tls.permittedPeer=["relay2"]' in text
        assert text.count('action.execOnlyWhenPreviousIsSuspended="on"') == 1


def test_jobs_and_scripts(host):
    cron = host.file("/etc/cron.d/rsyslog-stats")
    assert cron.exists and cron.user == "root"
    assert "flock -n /run/lock/rsyslog-stats-textfile.lock systemd-cat -t rsyslog-stats-textfile" in cron.content_string
    # the canary runs only on relays writing into OpenSearch (not here)
    assert not host.file("/etc/cron.d/rsyslog-canary").exists
    for script in ("rsyslog-stats-textfile", "rsyslog-stats-rotate", "rsyslog-canary"):
        f = host.file("/usr/local/sbin/" + script)
        assert f.user == "root" and f.mode == 0o755


# --- relays -----------------------------------------------------------------------

def test_relays_listen_on_the_private_address_only(hosts):
    for name in (RELAY1, RELAY2):
        h = hosts[name]
        deadline = time.monotonic() + 10
        while not h.socket("tcp://%s:2514" % ADDRESS[name]).is_listening and time.monotonic() < deadline:
            time.sleep(0.5)
        assert h.socket("tcp://%s:2514" % ADDRESS[name]).is_listening
        assert not h.socket("tcp://0.0.0.0:2514").is_listening
    assert not hosts[SHIPPER].socket("tcp://0.0.0.0:2514").is_listening
    assert not hosts[SHIPPER].socket("tcp://%s:2514" % ADDRESS[SHIPPER]).is_listening


def test_relay_lookup_tables_and_no_writer_password_without_opensearch(hosts):
    h = hosts[RELAY1]
    tier = json.loads(h.file("/etc/rsyslog-searchplat/host-tier.json").content_string)
    assert h.file("/etc/rsyslog-searchplat/host-tier.json").mode == 0o600
    assert not h.file("/etc/rsyslog-searchplat/opensearch-writer.password").exists
    assert tier["nomatch"] == "unknown"
    assert {"index": "shipper", "value": "app_servers"} in tier["table"]


# --- shipping and parsing -----------------------------------------------------------

def test_journal_json_line_reaches_the_relay_parsed_with_host_metadata(hosts):
    m = marker("app")
    hosts[SHIPPER].run_expect([0], "logger -t searchplat-app -- %s" % json.dumps(json.dumps(
        {"time": "2026-01-01T00:00:00.000Z", "level": "INFO", "message": "request", "request_id": m,
         "status": 200, "duration_ms": 12.5})))
    found = wait_docs(hosts, m)
    got = found[RELAY1] + found[RELAY2]
    assert len(got) == 1, found
    assert found[RELAY1], "relay1 is first in the list and up: it should have received the line"
    doc = got[0]
    assert doc["host"] == "shipper" and doc["program"] == "searchplat-app" and doc["source"] == "app"
    assert doc["severity"] == "notice" and doc["facility"] == "user"
    assert RFC3339.match(doc["@timestamp"]), doc["@timestamp"]
    assert doc["json"]["request_id"] == m and doc["json"]["status"] == 200 and doc["json"]["duration_ms"] == 12.5
    assert doc["tier"] == "app_servers" and doc["zone"] == "z1" and doc["site"] == "cloud-test"
    assert doc["relay"] == "relay1" and doc["peer_address"] == ADDRESS[SHIPPER]
    assert re.match(r"^[0-9A-F]{32}$", doc["id"]), doc["id"]
    assert json.loads(doc["message"])["request_id"] == m


def test_auth_message_gets_source_auth_and_no_json(hosts):
    m = marker("auth")
    hosts[SHIPPER].run_expect([0], "logger -p authpriv.notice -t sshd -- 'Failed password for invalid user %s'" % m)
    got = sum(wait_docs(hosts, m).values(), [])
    assert len(got) == 1
    doc = got[0]
    assert doc["source"] == "auth" and doc["facility"] == "authpriv" and doc["program"] == "sshd"
    assert doc["message"] == "Failed password for invalid user " + m
    assert "json" not in doc


def test_relays_own_lines_are_shipped_with_their_metadata(hosts):
    m = marker("relay2")
    hosts[RELAY2].run_expect([0], "logger -t molecule -- %s" % m)
    doc = sum(wait_docs(hosts, m).values(), [])[0]
    assert doc["host"] == "relay2" and doc["tier"] == "logging" and doc["zone"] == "z2"
    assert doc["source"] == "system" and doc["program"] == "molecule"


def test_json_access_log_file_is_shipped_with_source_and_fields(hosts):
    m = marker("nginx")
    line = json.dumps({"time": "2026-01-01T00:00:00+00:00", "request_id": m, "remote_addr": "192.0.2.7",
                       "status": 502, "request_time": 0.25, "uri": "/search?q=\"x\""})
    hosts[SHIPPER].run_expect([0], "printf '%%s\\n' %s >> /var/log/molecule/access.json.log" % json.dumps(line))
    got = sum(wait_docs(hosts, m).values(), [])
    assert len(got) == 1
    doc = got[0]
    assert doc["source"] == "nginx" and doc["program"] == "nginx"
    assert doc["file"] == "/var/log/molecule/access.json.log"
    assert doc["json"]["status"] == 502 and doc["json"]["uri"] == '/search?q="x"'
    assert doc["json"]["remote_addr"] == "192.0.2.7"


def test_multiline_log_is_one_message(hosts):
    m = marker("multi")
    hosts[SHIPPER].run_expect([0], (
        "printf '[2026-01-01T00:00:00] first %s\\n  at trace.line(1)\\n  at trace.line(2)\\n"
        "[2026-01-01T00:00:01] next\\n' >> /var/log/molecule/multi.log") % m)
    got = sum(wait_docs(hosts, m).values(), [])
    assert len(got) == 1, got
    assert got[0]["source"] == "multiline"
    # one message, its lines joined with real newlines
    assert "first %s\n  at trace.line(1)\n  at trace.line(2)" % m in got[0]["message"], got[0]["message"]


def test_impstats_counters_are_not_shipped(hosts):
    for name in (RELAY1, RELAY2):
        shipped = [d for d in docs(hosts[name], '"program": "rsyslogd-pstats"')]
        assert not shipped, "impstats counters reached the relay: %s" % shipped[:1]
        assert not docs(hosts[name], '\\"origin\\": \\"core.queue\\"')


# --- failover and queueing ------------------------------------------------------------

def arrived(hosts, prefix):
    """message -> set of document ids, over both relays, for markers with prefix."""
    seen = {}
    for name in (RELAY1, RELAY2):
        for doc in docs(hosts[name], prefix):
            if doc["program"] == "molecule":
                seen.setdefault(doc["message"], set()).add(doc["id"])
    return seen


def wait_arrived(hosts, prefix, count, seconds):
    deadline = time.monotonic() + seconds
    while True:
        seen = arrived(hosts, prefix)
        if len(seen) >= count or time.monotonic() > deadline:
            return seen
        time.sleep(2)


def log_markers(h, prefix, count):
    h.run_expect([0], "for i in $(seq 1 %d); do logger -t molecule -- %s$i; "
                      "[ $((i %% 50)) -eq 0 ] && sleep 0.2; done; true" % (count, prefix))
    return {"%s%d" % (prefix, i) for i in range(1, count + 1)}


def test_failover_to_the_second_relay(hosts):
    """relay1 stopped for longer than rsyslog_forward_failover_after (30 s
    here): the shipper retries it that long (lines wait in its queue), then
    relay2 takes over. rsyslog 8.2302 loses the line being sent when the
    failover happens (README.md: failover): at most that one, never the
    lines logged after."""
    prefix = "mol-failover-%s-" % uuid.uuid4().hex[:8]
    rsyslog(hosts[RELAY1], "stop")
    try:
        sent = log_markers(hosts[SHIPPER], prefix, 40)
        deadline = time.monotonic() + 90
        while len([d for d in docs(hosts[RELAY2], prefix) if d["program"] == "molecule"]) < 30:
            assert time.monotonic() < deadline, "relay2 did not take over while relay1 was down"
            time.sleep(2)
    finally:
        rsyslog(hosts[RELAY1], "start")
    seen = wait_arrived(hosts, prefix, len(sent), 60)
    missing = sorted(sent - set(seen), key=lambda m: int(m.rsplit("-", 1)[1]))
    print("failover: %d of %d lines lost: %s" % (len(missing), len(sent), missing))
    assert len(missing) <= 2, "%d of %d lines lost, e.g. %s" % (len(missing), len(sent), missing[:5])
    assert all(int(m.rsplit("-", 1)[1]) <= 5 for m in missing), "lines logged after the failover were lost"
    assert all(len(ids) == 1 for ids in seen.values()), "a line arrived twice as two documents"


def test_relays_down_then_up_loses_nothing(hosts):
    """Both relays stopped while 300 lines are logged, then started within
    rsyslog_forward_failover_after: every line arrives (count of unique
    markers); a line received twice is the same document (same id: stored
    once in OpenSearch)."""
    prefix = "mol-down-%s-" % uuid.uuid4().hex[:8]
    for name in (RELAY1, RELAY2):
        rsyslog(hosts[name], "stop")
    try:
        sent = log_markers(hosts[SHIPPER], prefix, 300)
        time.sleep(10)
    finally:
        for name in (RELAY2, RELAY1):
            rsyslog(hosts[name], "start")
    seen = wait_arrived(hosts, prefix, len(sent), 120)
    missing = sorted(sent - set(seen))
    assert not missing, "%d of %d lines lost, e.g. %s" % (len(missing), len(sent), missing[:5])
    assert all(len(ids) == 1 for ids in seen.values()), "a line arrived twice as two documents"


def test_queue_saved_to_disk_across_a_shipper_restart(hosts):
    """Both relays down, the shipper has suspended both (its lines wait in
    the forwarding queue); the shipper is restarted: the queue is written to
    disk and read back, and every line arrives once the relays are back."""
    shipper = hosts[SHIPPER]
    prefix = "mol-restart-%s-" % uuid.uuid4().hex[:8]
    since = shipper.check_output("date '+%Y-%m-%d %H:%M:%S'")
    for name in (RELAY1, RELAY2):
        rsyslog(hosts[name], "stop")
    try:
        # Probe lines until the shipper has found both relays gone (the first
        # ones may sit in a RELP window that the restart drops: not counted).
        deadline = time.monotonic() + 60
        while "action 'relay_relay2' suspended" not in shipper.check_output(
                "journalctl -u rsyslog --since '%s' --no-pager -o cat" % since):
            assert time.monotonic() < deadline, "the shipper did not notice the relays were down"
            shipper.run_expect([0], "logger -t molecule -- %sprobe" % prefix)
            time.sleep(1)
        sent = log_markers(shipper, prefix, 200)
        time.sleep(2)
        shipper.run_expect([0], "systemctl restart rsyslog")
        journal = shipper.check_output("journalctl -u rsyslog --since '%s' --no-pager -o cat" % since)
        assert re.search(r"searchplat_forward.*queue files exist on disk, re-starting with \d+ messages", journal), \
            journal[-3000:]
    finally:
        for name in (RELAY2, RELAY1):
            rsyslog(hosts[name], "start")
    seen = wait_arrived(hosts, prefix, len(sent), 120)
    missing = sorted(sent - set(seen))
    assert not missing, "%d of %d lines lost, e.g. %s" % (len(missing), len(sent), missing[:5])


# --- refused clients ------------------------------------------------------------------

REFUSED_CONF = """
global(workDirectory="/root/refused-{name}")
module(load="imuxsock" SysSock.Use="off")
module(load="omrelp" tls.tlslib="openssl")
input(type="imuxsock" Socket="/root/refused-{name}/log.sock" ruleset="out")
ruleset(name="out") {{
  action(type="omrelp" target="10.237.0.11" port="2514" tls="on" tls.caCert="/etc/ssl/searchplat/ca.crt"
         tls.myCert="/root/molecule-pki/{name}.crt" tls.myPrivKey="/root/molecule-pki/{name}.key"
         tls.authMode="name" tls.permittedPeer=["relay1"] conn.timeout="5"
         template="RSYSLOG_SyslogProtocol23Format" action.resumeRetryCount="2" action.resumeInterval="1")
}}
"""


@pytest.mark.parametrize("name,why,expect", [
    ("rogue", "certificate of another CA", r"authentication error .*issuer += /CN=Some Other CA"),
    ("outsider", "this CA, but a name no relay permits", r"authentication error 'no permit+ed name found', peer is 'DNSname: outsider"),
])
def test_a_client_outside_the_inventory_is_refused(hosts, name, why, expect):
    shipper, relay = hosts[SHIPPER], hosts[RELAY1]
    m = marker(name)
    since = relay.check_output("date '+%Y-%m-%d %H:%M:%S'")
    shipper.run_expect([0], "mkdir -p /root/refused-%s" % name)
    shipper.run_expect([0], "cat > /root/refused-%s.conf <<'EOF'\n%s\nEOF" % (name, REFUSED_CONF.format(name=name)))
    shipper.run_expect([0], "rsyslogd -N1 -f /root/refused-%s.conf" % name)
    shipper.run_expect([0], "rsyslogd -f /root/refused-{0}.conf -i /root/refused-{0}.pid".format(name))
    try:
        deadline = time.monotonic() + 10
        while not shipper.file("/root/refused-%s/log.sock" % name).exists and time.monotonic() < deadline:
            time.sleep(0.5)
        for _ in range(3):
            shipper.run_expect([0], "logger -u /root/refused-%s/log.sock -t molecule -- %s" % (name, m))
        time.sleep(12)
    finally:
        shipper.run("kill $(cat /root/refused-%s.pid)" % name)
    assert not sum(wait_docs(hosts, m, seconds=1).values(), []), "%s (%s) got a message through" % (name, why)
    journal = relay.check_output("journalctl -u rsyslog --since '%s' --no-pager -o cat" % since)
    assert re.search(expect, journal), journal[-2000:]


# --- the TLS profile -------------------------------------------------------------------

def _handshake(shipper, *options):
    """openssl s_client from the shipper to relay1's RELP port with the
    shipper's certificate: the cipher negotiated, or None when refused."""
    out = shipper.run("timeout 10 openssl s_client -connect %s:2514 -servername relay1 "
                      "-cert /etc/ssl/searchplat/rsyslog.crt -key /etc/ssl/searchplat/rsyslog.key "
                      "-CAfile /etc/ssl/searchplat/ca.crt %s </dev/null 2>&1" % (ADDRESS[RELAY1], " ".join(options))).stdout
    cipher = re.search(r"Cipher is (\S+)", out)
    return None if not cipher or cipher.group(1) == "(NONE)" else cipher.group(1)


@pytest.mark.parametrize("options,accepted", [
    (("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"), True),
    (("-tls1_3", "-groups", "X25519"), True),
    (("-tls1_1",), False),
    (("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA"), False),   # CBC
    (("-tls1_3", "-groups", "secp521r1"), False),
], ids=["tls12-gcm", "tls13-x25519", "tls11", "tls12-cbc", "tls13-secp521r1"])
def test_relp_speaks_only_its_tls_profile(hosts, options, accepted):
    """rsyslog_tls_protocols, _ciphers, _ciphersuites and _curves (the
    platform's profile) on the relay's RELP listener: what the profile lists
    is accepted, what it leaves out is refused."""
    cipher = _handshake(hosts[SHIPPER], *options)
    assert (cipher is not None) == accepted, "%s: negotiated %s" % (" ".join(options), cipher)


# --- pipeline metrics -------------------------------------------------------------------

def test_pipeline_metrics(hosts):
    shipper = hosts[SHIPPER]
    deadline = time.monotonic() + 30
    while not shipper.file("/var/log/rsyslog/impstats.json").exists and time.monotonic() < deadline:
        time.sleep(1)
    shipper.run_expect([0], "flock -n /run/lock/rsyslog-stats-textfile.lock /usr/local/sbin/rsyslog-stats-textfile "
                            "--stats-file /var/log/rsyslog/impstats.json --interval 10 --output " + TEXTFILE)
    prom = shipper.file(TEXTFILE)
    assert prom.mode == 0o644
    text = prom.content_string
    for needle in ('rsyslog_queue_size{queue="searchplat_forward"}',
                   'rsyslog_queue_discarded_total{queue="searchplat_forward",reason="full"} 0',
                   'rsyslog_action_processed_total{action="relay_relay1"}',
                   'rsyslog_action_failed_total{action="relay_relay2"}',
                   'rsyslog_action_suspended_total{action="relay_relay1"}',
                   'rsyslog_input_submitted_total{input="imjournal"}',
                   "rsyslog_stats_timestamp_seconds "):
        assert needle in text, needle + " missing:\n" + text
    stamp = float(re.search(r"^rsyslog_stats_timestamp_seconds (\S+)$", text, re.M).group(1))
    assert time.time() - stamp < 60
    processed = re.search(r'^rsyslog_action_processed_total\{action="relay_relay1"\} (\S+)$', text, re.M)
    assert processed and float(processed.group(1)) > 0, text
