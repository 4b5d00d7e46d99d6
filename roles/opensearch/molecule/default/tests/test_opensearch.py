"""Verify the opensearch role: a one-node cluster, TLS, users, snapshots.

Host tests run on each node through Testinfra; the REST tests run once from
the controller against https://10.234.0.11:9200, verifying the server
certificate against the scenario's throwaway CA (prepare.yml). Passwords are
the scenario's test values (molecule.yml).
"""

import base64
import json
import os
import re
import shlex
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest

PREFIX = os.environ.get("MOLECULE_INSTANCE_PREFIX", "sp")
NODES = [PREFIX + "-os-%d" % i for i in (1,)]
ADDRESSES = ["10.234.0.1%d" % i for i in (1,)]
API = "https://%s:9200" % ADDRESSES[0]
CA = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "pki", "ca.crt")
USERS = {
    "admin": "mol-Admin-pw1",
    "searchapp": "mol-App-pw1",
    "monitoring": "mol-Mon-pw1",
    "backup": "mol-Backup-pw1",
    "dashboards_server": "mol-Osd-pw1",
}

testinfra_hosts = ["ansible://" + name for name in NODES]


def call(method, path, user=None, body=None, base=API, cafile=CA):
    """(status, parsed JSON or text) of one REST call; never raises on HTTP errors."""
    headers = {"Content-Type": "application/json"}
    if user:
        token = base64.b64encode(("%s:%s" % (user, USERS[user])).encode()).decode()
        headers["Authorization"] = "Basic " + token
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    ctx = ssl.create_default_context(cafile=cafile)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=60) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


# --- on each node -------------------------------------------------------------

def test_service_runs_as_opensearch(host):
    service = host.service("opensearch")
    assert service.is_running and service.is_enabled
    java = [p for p in host.process.filter(comm="java")]
    assert java and all(p.user == "opensearch" for p in java)


def test_unit_limits_and_hardening(host):
    show = host.check_output(
        "systemctl show opensearch -p LimitNOFILE -p LimitMEMLOCK -p NoNewPrivileges -p ProtectSystem"
        " -p PrivateTmp -p ProtectHome -p User")
    props = dict(line.split("=", 1) for line in show.splitlines())
    # A container: capped to the hard limits the container allows (its PID 1's).
    limits = host.file("/proc/1/limits").content_string
    nofile_hard = [line.split()[4] for line in limits.splitlines() if line.startswith("Max open files")][0]
    memlock_hard = [line.split()[4] for line in limits.splitlines() if line.startswith("Max locked memory")][0]
    assert props["LimitNOFILE"] == str(min(65535, int(nofile_hard)))
    assert props["LimitMEMLOCK"] == memlock_hard
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["PrivateTmp"] == "yes"
    assert props["ProtectHome"] == "yes"
    assert props["User"] == "opensearch"
    unit = host.file("/etc/systemd/system/opensearch.service").content_string
    assert "Container: capped to the hard limits" in unit and "TimeoutStartSec=300" in unit


def test_install_layout(host):
    home = host.file("/usr/share/opensearch")
    assert home.is_symlink and home.linked_to == "/usr/share/opensearch-2.19.3"
    assert host.file("/usr/share/opensearch-2.19.3/plugins/opensearch-security").is_directory
    assert host.file("/usr/share/opensearch-2.19.3").user == "root"
    assert host.package("openjdk-17-jre-headless").is_installed
    for path, owner, mode in [
        ("/etc/opensearch", "root", 0o750),
        ("/etc/opensearch/opensearch.yml", "root", 0o640),
        ("/etc/opensearch/opensearch-security", "root", 0o750),
        ("/etc/opensearch/opensearch-security/internal_users.yml", "root", 0o640),
        ("/etc/opensearch/certs", "opensearch", 0o750),
        ("/var/lib/opensearch", "opensearch", 0o750),
        ("/var/log/opensearch", "opensearch", 0o750),
    ]:
        f = host.file(path)
        assert (f.user, f.group, f.mode) == (owner, "opensearch", mode), path


def test_keys_pkcs8_and_private(host):
    node_key = host.file("/etc/opensearch/certs/node.key")
    assert (node_key.user, node_key.mode) == ("opensearch", 0o600)
    admin_key = host.file("/etc/opensearch/certs/admin.key")
    assert (admin_key.user, admin_key.group, admin_key.mode) == ("root", "root", 0o600)
    for key in (node_key, admin_key):
        text = host.check_output("cat %s" % key.path)
        assert text.startswith("-----BEGIN PRIVATE KEY-----")
    # the pki-style source stays a traditional EC key
    assert host.check_output("head -1 /etc/ssl/searchplat/opensearch.key") == "-----BEGIN EC PRIVATE KEY-----"


def test_configuration(host):
    conf = host.file("/etc/opensearch/opensearch.yml").content_string
    # bootstrap setting removed once the cluster formed, marker present
    assert "initial_cluster_manager_nodes" not in conf
    assert host.file("/etc/opensearch/.cluster-formed").exists
    assert "bootstrap.memory_lock: false" in conf
    assert "plugins.security.ssl.http.enabled: true" in conf
    assert "transport.host: \"127.200.0.1" in conf
    assert "cluster.routing.allocation.awareness.attributes: zone" in conf
    for layer in ("http", "transport"):
        assert 'plugins.security.ssl.%s.enabled_protocols: ["TLSv1.2", "TLSv1.3"]' % layer in conf
        assert 'plugins.security.ssl.%s.enabled_ciphers: ["TLS_AES_128_GCM_SHA256"' % layer in conf
    jvm = host.file("/etc/opensearch/jvm.options").content_string
    assert "-Djdk.tls.namedGroups=x25519,secp256r1,secp384r1" in jvm
    heap = host.file("/etc/opensearch/jvm.options.d/heap.options").content_string
    assert "-Xms384m" in heap and "-Xmx384m" in heap
    users = host.file("/etc/opensearch/opensearch-security/internal_users.yml").content_string
    assert "$2y$10$" in users
    assert not any(pw in users for pw in USERS.values())


# --- the cluster, from the controller -------------------------------------------

def test_cluster_green_with_its_node_roles_and_zone():
    status, health = call("GET", "/_cluster/health?wait_for_status=green&timeout=60s", "admin")
    assert status == 200 and health["status"] == "green" and health["number_of_nodes"] == len(NODES), health
    status, nodes = call("GET", "/_cat/nodes?format=json&h=name,ip,node.role", "admin")
    assert sorted(n["name"] for n in nodes) == NODES
    assert all(n["node.role"] == "dim" for n in nodes), nodes
    assert all(n["ip"].startswith("127.200.0.") for n in nodes), nodes
    status, attrs = call("GET", "/_cat/nodeattrs?format=json&h=node,attr,value", "admin")
    zones = sorted(a["value"] for a in attrs if a["attr"] == "zone")
    assert zones == ["zone-a"]


def test_tls_verifies_against_the_ca_on_every_node():
    for address in ADDRESSES:
        status, _ = call("GET", "/", "admin", base="https://%s:9200" % address)
        assert status == 200
    # a client with only the system trust store refuses the certificate
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(API + "/", context=ssl.create_default_context(), timeout=10)


def test_anonymous_gets_401():
    status, _ = call("GET", "/")
    assert status == 401
    status, _ = call("GET", "/_cluster/health")
    assert status == 401


def test_app_user_reads_and_writes_only_its_indices():
    status, body = call("PUT", "/search-verify/_doc/1?refresh=true", "searchapp", {"title": "hello"})
    assert status in (200, 201), body
    status, body = call("GET", "/search-verify/_doc/1", "searchapp")
    assert status == 200 and body["_source"]["title"] == "hello"
    status, body = call("GET", "/search-verify/_search?q=title:hello", "searchapp")
    assert status == 200 and body["hits"]["total"]["value"] == 1
    # the app template applied (1 shard)
    status, body = call("GET", "/search-verify/_settings", "admin")
    assert body["search-verify"]["settings"]["index"]["number_of_shards"] == "1"
    status, _ = call("PUT", "/other-index/_doc/1", "searchapp", {"x": 1})
    assert status == 403
    status, _ = call("GET", "/other-index/_search", "searchapp")
    assert status in (403, 404)
    status, _ = call("GET", "/_cluster/settings", "searchapp")
    assert status == 403
    status, _ = call("PUT", "/_cluster/settings", "searchapp",
                     {"persistent": {"cluster.routing.allocation.enable": "none"}})
    assert status == 403


def test_monitoring_user_reads_health_but_cannot_write():
    status, body = call("GET", "/_cluster/health", "monitoring")
    assert status == 200 and body["number_of_nodes"] == len(NODES)
    status, _ = call("GET", "/_nodes/stats", "monitoring")
    assert status == 200
    status, _ = call("PUT", "/search-monitoring/_doc/1", "monitoring", {"x": 1})
    assert status == 403
    status, _ = call("PUT", "/_cluster/settings", "monitoring",
                     {"persistent": {"cluster.routing.allocation.enable": "none"}})
    assert status == 403


def test_index_templates_present():
    for name, pattern in (("searchplat-app", "search-*"), ("searchplat-logs", "logs-*")):
        status, body = call("GET", "/_index_template/" + name, "admin")
        assert status == 200
        template = body["index_templates"][0]["index_template"]
        assert template["index_patterns"] == [pattern]
        assert template["_meta"]["searchplat_hash"]


def test_snapshot_repository_verifies_and_restores():
    status, body = call("POST", "/_snapshot/searchplat-fs/_verify", "admin")
    assert status == 200 and len(body["nodes"]) == len(NODES), body
    docs = [{"index": {"_index": "search-snaptest", "_id": str(i)}} if j == 0 else {"n": i}
            for i in range(25) for j in (0, 1)]
    bulk = "\n".join(json.dumps(d) for d in docs) + "\n"
    req = urllib.request.Request(
        API + "/_bulk?refresh=true", data=bulk.encode(), method="POST",
        headers={"Content-Type": "application/x-ndjson",
                 "Authorization": "Basic " + base64.b64encode(b"searchapp:mol-App-pw1").decode()})
    with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=CA), timeout=60) as resp:
        assert not json.loads(resp.read())["errors"]
    snap = "verify-%d" % int(time.time())
    status, body = call("PUT", "/_snapshot/searchplat-fs/%s?wait_for_completion=true" % snap, "backup",
                        {"indices": "search-snaptest", "include_global_state": False})
    assert status == 200 and body["snapshot"]["state"] == "SUCCESS", body
    status, body = call("GET", "/_snapshot/searchplat-fs/%s" % snap, "backup")
    assert status == 200
    status, body = call("POST", "/_snapshot/searchplat-fs/%s/_restore?wait_for_completion=true" % snap, "backup",
                        {"indices": "search-snaptest", "rename_pattern": "search-(.+)",
                         "rename_replacement": "restored-$1", "include_global_state": False})
    assert status == 200, body
    status, health = call("GET", "/_cluster/health/restored-snaptest?wait_for_status=yellow&timeout=60s", "admin")
    assert status == 200
    count_src = call("GET", "/search-snaptest/_count", "admin")[1]["count"]
    count_dst = call("GET", "/restored-snaptest/_count", "admin")[1]["count"]
    assert count_src == count_dst == 25
    # the backup user reads (the restore drill compares documents) but may
    # not write or delete outside its restored copies, nor change settings
    status, _ = call("GET", "/search-snaptest/_search", "backup")
    assert status == 200
    status, _ = call("POST", "/search-snaptest/_doc", "backup", {"x": 1})
    assert status == 403
    status, _ = call("DELETE", "/search-snaptest", "backup")
    assert status == 403
    status, _ = call("DELETE", "/restored-snaptest", "backup")
    assert status == 200
    status, _ = call("PUT", "/_cluster/settings", "backup",
                     {"persistent": {"cluster.routing.allocation.enable": "none"}})
    assert status == 403


def test_extra_user_mapped_to_a_static_role():
    """opensearch_extra_users may map to a static role of the security plugin
    (opensearch_static_roles_allowed): dashboards_server gets kibana_server,
    the permissions of OpenSearch Dashboards' server (its own indices), and
    nothing on the application's indices."""
    status, body = call("GET", "/_plugins/_security/api/account", "dashboards_server")
    assert status == 200, body
    assert "kibana_server" in body["roles"], body
    status, body = call("GET", "/_plugins/_security/authinfo", "dashboards_server")
    assert status == 200 and "kibana_server" in body["roles"], body
    index = "/.opensearch_dashboards_molecule"
    status, body = call("PUT", index, "dashboards_server", {"settings": {"index": {"number_of_replicas": 0}}})
    assert status == 200, body
    status, body = call("PUT", index + "/_doc/1?refresh=true", "dashboards_server", {"type": "config"})
    assert status == 201, body
    status, body = call("GET", index + "/_doc/1", "dashboards_server")
    assert status == 200 and body["_source"] == {"type": "config"}, body
    status, _ = call("DELETE", index, "dashboards_server")
    assert status == 200
    status, _ = call("PUT", "/search-dashboards/_doc/1", "dashboards_server", {"x": 1})
    assert status == 403
    status, _ = call("GET", "/search-*/_search", "dashboards_server")
    assert status == 403
    rolesmapping = call("GET", "/_plugins/_security/api/rolesmapping/kibana_server", "admin")[1]
    assert rolesmapping["kibana_server"]["users"] == ["dashboards_server"], rolesmapping


# --- TLS: real handshakes against the platform's profile ----------------------------
# OpenSSL's s_client offers one suite and a chosen list of groups; the node
# must refuse what Mozilla's intermediate profile leaves out (the CBC suites
# and the groups X448 and secp521r1 it accepted before the profile) and
# accept what it lists. In TLS 1.2 Java serves an ECDSA certificate only to
# a client that lists the certificate's curve (P-256), so there the
# profile's group is offered last, after X448 and secp521r1: Java takes the
# client's first group it allows (secp521r1 before the profile), so it must
# choose P-256. HTTP (9200) from the controller; transport (9300, bound to
# the node's 127.200.0.x address, mutual TLS) from the node itself with the
# node's certificate as the client's.

def _handshake(argv, run=None):
    """(output, negotiated cipher or None, the server's temporary key or None) of one s_client handshake."""
    argv = ["openssl", "s_client", "-verify_return_error"] + argv
    if run is None:
        proc = subprocess.run(argv, input="", capture_output=True, text=True, timeout=60)
        rc, out = proc.returncode, proc.stdout + proc.stderr
    else:
        result = run(" ".join(shlex.quote(a) for a in argv) + " </dev/null")
        rc, out = result.rc, result.stdout + result.stderr
    cipher = re.search(r"Cipher is (\S+)", out)
    cipher = cipher.group(1) if cipher and cipher.group(1) != "(NONE)" else None
    key = re.search(r"(?:Server|Peer) Temp Key: (.*)$", out, re.M)
    if rc != 0 or "Verify return code: 0 (ok)" not in out:
        cipher = None
    return out, cipher, key.group(1) if key else None


def _refused(out, cipher):
    # The server refused: an alert received from it (ssl3_read_bytes), not
    # the client giving up before sending (no ciphers available) or the network.
    return cipher is None and re.search(r"ssl3_read_bytes:\w+ alert ", out) is not None


REFUSED = [
    ("TLS 1.2 ECDHE-ECDSA-AES128-SHA", ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"]),
    ("TLS 1.2 ECDHE-ECDSA-AES128-SHA256", ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256"]),
    ("TLS 1.2 ECDHE-ECDSA-AES256-SHA", ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-SHA"]),
    ("TLS 1.2 ECDHE-ECDSA-AES256-SHA384", ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-SHA384"]),
    ("TLS 1.3 secp521r1", ["-tls1_3", "-groups", "secp521r1"]),
    ("TLS 1.3 X448", ["-tls1_3", "-groups", "X448"]),
    ("TLS 1.1", ["-tls1_1", "-cipher", "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0"]),
]
ACCEPTED = [
    ("TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256 X25519",
     ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", "-curves", "X25519:prime256v1"],
     "ECDHE-ECDSA-AES128-GCM-SHA256", "X25519"),
    ("TLS 1.2 X448 and secp521r1 passed over for P-256",
     ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", "-curves", "X448:secp521r1:prime256v1"],
     "ECDHE-ECDSA-AES128-GCM-SHA256", "prime256v1"),
    ("TLS 1.2 ECDHE-ECDSA-CHACHA20-POLY1305 P-384",
     ["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305", "-curves", "secp384r1:prime256v1"],
     "ECDHE-ECDSA-CHACHA20-POLY1305", "secp384r1"),
    ("TLS 1.3 TLS_AES_256_GCM_SHA384 P-256",
     ["-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384", "-groups", "prime256v1"],
     "TLS_AES_256_GCM_SHA384", "prime256v1"),
    ("TLS 1.3 X448 and secp521r1 passed over for X25519",
     ["-tls1_3", "-groups", "X448:secp521r1:X25519"],
     "TLS_AES_128_GCM_SHA256", "X25519"),
]


def _http(options):
    return _handshake(["-connect", "%s:9200" % ADDRESSES[0], "-CAfile", CA] + options)


def _transport(host, options):
    conf = host.file("/etc/opensearch/opensearch.yml").content_string
    address = re.search(r'^transport\.host: "?([0-9.]+)', conf, re.M).group(1)
    return _handshake(["-connect", "%s:9300" % address, "-CAfile", "/etc/ssl/searchplat/ca.crt",
                       "-cert", "/etc/ssl/searchplat/opensearch.crt",
                       "-key", "/etc/ssl/searchplat/opensearch.key"] + options, run=host.run)


@pytest.mark.parametrize("name,options", REFUSED, ids=[r[0] for r in REFUSED])
def test_http_tls_refuses_outside_the_profile(name, options):
    out, cipher, _ = _http(options)
    assert _refused(out, cipher), "%s accepted on 9200 (%s):\n%s" % (name, cipher, out[-2000:])


@pytest.mark.parametrize("name,options,cipher,key", ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_http_tls_accepts_the_profile(name, options, cipher, key):
    out, negotiated, temp_key = _http(options)
    assert negotiated == cipher and key in (temp_key or ""), "%s on 9200:\n%s" % (name, out[-2000:])


@pytest.mark.parametrize("name,options", REFUSED, ids=[r[0] for r in REFUSED])
def test_transport_tls_refuses_outside_the_profile(host, name, options):
    out, cipher, _ = _transport(host, options)
    assert _refused(out, cipher), "%s accepted on 9300 (%s):\n%s" % (name, cipher, out[-2000:])


@pytest.mark.parametrize("name,options,cipher,key", ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_transport_tls_accepts_the_profile(host, name, options, cipher, key):
    out, negotiated, temp_key = _transport(host, options)
    assert negotiated == cipher and key in (temp_key or ""), "%s on 9300:\n%s" % (name, out[-2000:])
