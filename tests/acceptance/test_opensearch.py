"""OpenSearch cluster (roles/opensearch, roles/pki) on every OpenSearch node.

Node checks run on each host. Cluster checks run once (on the tier's first
host) with a real client: opensearch-py from the controller, TLS verified
against the project CA, as each platform user (admin, app, monitoring,
backup). The controller needs to reach port 9200 of the nodes: the lab opens
it to the lab controller (firewall_extra_rules in
inventories/lab/group_vars/all/main.yml); on a real inventory, run from a
host that is allowed (e.g. a bastion in firewall_extra_rules). A controller
the firewall drops fails these tests (with that fix in the message): a
firewall regression must never turn them into skips.
"""

from __future__ import annotations

import ipaddress
import os
import time
import uuid

import pytest
import yaml
from disruption import disruption_lock
from load import AckedWrites, SearchLoad, hey_result, start_hey
from netprobe import tcp_probe
from opensearchpy.exceptions import AuthenticationException, AuthorizationException
from resilience import load_figures, record
from skips import not_configured

pytestmark = pytest.mark.groups("opensearch")

HTTP_PORT = 9200
TRANSPORT_PORT = 9300
CONFIG = "/etc/opensearch/opensearch.yml"


def _name(host) -> str:
    return host.backend.get_hostname()


def _nodes(inventory):
    return inventory.hosts_in("opensearch")


def _transport_address(inventory, name):
    hv = inventory.hostvars(name)
    return str(hv.get("opensearch_transport_host") or inventory.address(name))


def _expected_roles(inventory, name) -> set[str]:
    """The roles the inventory intends: child groups, else opensearch_node_roles, else all."""
    cm, data = inventory.hosts_in("opensearch_cluster_manager"), inventory.hosts_in("opensearch_data")
    if cm or data:
        roles = set()
        if name in cm:
            roles.add("cluster_manager")
        if name in data:
            roles |= {"data", "ingest"}
        return roles
    roles = inventory.hostvars(name).get("opensearch_node_roles")
    return set(roles) if roles else {"cluster_manager", "data", "ingest"}


# --- fixtures ------------------------------------------------------------------

# --- every node ------------------------------------------------------------------

def test_service_runs_as_its_own_user(host):
    svc = host.service("opensearch")
    assert svc.is_running and svc.is_enabled
    java = [p for p in host.process.filter(comm="java") if "org.opensearch.bootstrap.OpenSearch" in p.args]
    assert java, "no OpenSearch JVM"
    assert {p.user for p in java} == {"opensearch"}


def test_listens_on_private_and_transport_addresses_only(host, inventory):
    name = _name(host)
    private, transport = inventory.address(name), _transport_address(inventory, name)
    assert host.socket(f"tcp://{private}:{HTTP_PORT}").is_listening
    assert host.socket(f"tcp://{transport}:{TRANSPORT_PORT}").is_listening
    for port in (HTTP_PORT, TRANSPORT_PORT):
        assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening
        assert not host.socket(f"tcp://:::{port}").is_listening


def test_keys_are_private_to_opensearch(host):
    certs = host.file("/etc/opensearch/certs")
    assert certs.is_directory and certs.user == "opensearch"
    keys = host.check_output("find /etc/opensearch/certs -name '*.key'").split()
    assert keys, "no keys in /etc/opensearch/certs"
    for key in keys:
        f = host.file(key)
        # The node's key is read by OpenSearch; the admin client key only by
        # root (securityadmin.sh runs as root).
        owner = "root" if "admin" in os.path.basename(key) else "opensearch"
        assert (f.user, f.mode) == (owner, 0o600), key
        assert "BEGIN PRIVATE KEY" in host.check_output(f"sudo head -1 {key}"), f"{key} is not PKCS#8"


def test_bootstrap_setting_removed_once_formed(host):
    config = yaml.safe_load(host.file(CONFIG).content_string)
    assert "cluster.initial_cluster_manager_nodes" not in config
    assert config["plugins.security.ssl.http.enabled"] is True


def test_http_refuses_plain_and_anonymous(host, inventory):
    address = inventory.address(_name(host))
    plain = host.run(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 10 http://{address}:{HTTP_PORT}/")
    # Plain HTTP on the TLS port: the node closes the connection without any
    # HTTP answer (curl: no status, exit 52 empty reply or 56 reset). Not
    # connecting at all (7) or timing out (28) would be another failure.
    assert (plain.stdout, plain.rc) in (("000", 52), ("000", 56)), \
        f"plain HTTP got status {plain.stdout}, curl exit {plain.rc}: {plain.stderr}"
    anon = host.run(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 10 "
                    f"--cacert /etc/ssl/searchplat/ca.crt https://{address}:{HTTP_PORT}/")
    assert anon.stdout == "401"


def test_transport_closed_to_other_tiers(host, inventory, peer):
    """Transport (9300) only between OpenSearch nodes, HTTP (9200) not from the
    load balancers: from a load balancer (else any host of another tier) both
    connects time out (dropped by the firewall). A refused connect or a probe
    that did not run is not a firewall."""
    name = _name(host)
    others = [h for h in inventory.all_hosts() if h not in inventory.hosts_in("opensearch")]
    if not others:
        not_configured("no host outside the opensearch group to probe from")
    source = (inventory.hosts_in("loadbalancers") or others)[0]
    transport = _transport_address(inventory, name)
    # A loopback transport address (the lab's 127.200.x alias) is this host's
    # own loopback on the source: other hosts reach the node only at its
    # private address, where the firewall must drop 9300.
    if ipaddress.ip_address(transport).is_loopback:
        transport = inventory.address(name)
    assert tcp_probe(peer(source), transport, TRANSPORT_PORT) == "filtered", f"{TRANSPORT_PORT} from {source}"
    if source in inventory.hosts_in("loadbalancers"):
        assert tcp_probe(peer(source), inventory.address(name), HTTP_PORT) == "filtered", f"{HTTP_PORT} from {source}"


# --- the cluster (once) ------------------------------------------------------------

@pytest.mark.once
def test_cluster_green_with_every_node_and_its_roles(host, inventory, admin):
    health = admin.cluster.health(params={"wait_for_status": "green"})
    assert health["status"] == "green", health
    nodes = admin.nodes.info(metric="settings")["nodes"].values()
    by_name = {n["name"]: set(n["roles"]) for n in nodes}
    assert set(by_name) == set(_nodes(inventory))
    for name, roles in by_name.items():
        assert roles == _expected_roles(inventory, name), name


@pytest.mark.once
def test_zone_awareness_places_replicas_in_another_zone(host, inventory, admin):
    zones = {n: inventory.hostvars(n).get("zone") for n in _nodes(inventory)}
    if len(set(zones.values()) - {None}) < 2:
        not_configured("fewer than two zones among the OpenSearch nodes (zone host variable)")
    index = f"search-zones-{uuid.uuid4().hex[:8]}"
    admin.indices.create(index=index, body={"settings": {"number_of_shards": 3, "number_of_replicas": 1}})
    try:
        admin.cluster.health(index=index, params={"wait_for_status": "green"})
        shards = admin.cat.shards(index=index, format="json", h="shard,prirep,node")
        placed: dict[str, set] = {}
        for s in shards:
            placed.setdefault(s["shard"], set()).add(zones[s["node"]])
        assert all(len(z) == 2 for z in placed.values()), shards
    finally:
        admin.indices.delete(index=index)


@pytest.mark.once
def test_users_have_least_privilege(host, inventory, os_client):
    anonymous, app, monitoring = os_client(None), os_client("app"), os_client("monitoring")
    with pytest.raises(AuthenticationException):
        anonymous.cluster.health()
    index = f"search-acceptance-{uuid.uuid4().hex[:8]}"
    app.index(index=index, body={"title": "least privilege"}, params={"refresh": "true"})
    try:
        assert app.count(index=index)["count"] == 1
        with pytest.raises(AuthorizationException):
            app.index(index="other-index", body={"x": 1})
        with pytest.raises(AuthorizationException):
            app.cluster.put_settings(body={"transient": {"cluster.routing.allocation.enable": "all"}})
        assert monitoring.cluster.health()["status"] in ("green", "yellow")
        with pytest.raises(AuthorizationException):
            monitoring.index(index=index, body={"x": 1})
    finally:
        os_client("admin").indices.delete(index=index)


@pytest.mark.once
def test_index_templates_installed(host, inventory, admin):
    """The search cluster holds the app's template, and the logs' only when
    it is the log store (platform_logging_store: search); a dedicated log
    store holds that one (test_logging)."""
    names = {t["name"] for t in admin.indices.get_index_template()["index_templates"]}
    assert "searchplat-app" in names, names
    logs_here = inventory.resolved(host.backend.get_hostname(), "platform_logging_store") == "search"
    assert ("searchplat-logs" in names) == logs_here, names


@pytest.mark.once
def test_snapshot_and_restore_keep_every_document(host, inventory, admin, os_client):
    """The backup user snapshots an index and restores it into its own copies
    (opensearch_restored_index_prefix); a restore under any other name is
    the admin's and refused to it."""
    backup = os_client("backup")
    repos = admin.snapshot.get_repository()
    assert repos, "no snapshot repository registered"
    repo = sorted(repos)[0]
    assert backup.snapshot.verify_repository(repository=repo)["nodes"]
    prefix = inventory.resolved(host.backend.get_hostname(), "opensearch_restored_index_prefix")
    index = f"search-snap-{uuid.uuid4().hex[:8]}"
    admin.bulk(body="".join(f'{{"index":{{"_index":"{index}"}}}}\n{{"n":{i}}}\n' for i in range(500)), params={"refresh": "true"})
    snap = f"acceptance-{uuid.uuid4().hex[:8]}"

    def restore(replacement):
        return backup.snapshot.restore(repository=repo, snapshot=snap,
                                       body={"indices": index, "rename_pattern": "(.+)",
                                             "rename_replacement": replacement, "include_global_state": False},
                                       params={"wait_for_completion": "true", "request_timeout": 120})
    try:
        backup.snapshot.create(repository=repo, snapshot=snap,
                               body={"indices": index, "include_global_state": False},
                               params={"wait_for_completion": "true", "request_timeout": 120})
        with pytest.raises(AuthorizationException):
            restore("$1-elsewhere")
        restore(prefix + "$1")
        admin.indices.refresh(index=prefix + index)
        assert admin.count(index=prefix + index)["count"] == 500
    finally:
        admin.indices.delete(index=f"{index}*,{prefix}{index}", params={"ignore_unavailable": "true"})
        backup.snapshot.delete(repository=repo, snapshot=snap, params={"ignore": 404})


# --- disruptive: nodes go away under search load ---------------------------------

@pytest.fixture
def cluster_disruption():
    """A disruptive cluster test (marked once: on the tier's first host) never
    runs beside another one (a killed node during a rolling restart would
    stop the restart)."""
    with disruption_lock("opensearch"):
        yield


@pytest.fixture
def loaded_index(cluster_disruption, os_client):
    admin = os_client("admin", timeout=60)
    index = f"search-load-{uuid.uuid4().hex[:8]}"
    admin.indices.create(index=index, body={"settings": {"number_of_shards": 3, "number_of_replicas": 1}})
    admin.bulk(body="".join(f'{{"index":{{"_index":"{index}"}}}}\n{{"title":"doc {i}"}}\n'
                            for i in range(1000)), params={"refresh": "true"})
    admin.cluster.health(index=index, params={"wait_for_status": "green", "timeout": "120s"},
                         request_timeout=130)
    yield index
    admin.indices.delete(index=index, params={"ignore_unavailable": "true"})


def _wait_status(client, wanted, seconds, nodes=None):
    """Wait until the health status is one of `wanted` (and, if given, the
    cluster has `nodes` nodes); the status, or None after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            health = client.cluster.health()
            if health["status"] in wanted and nodes in (None, health["number_of_nodes"]):
                return health["status"]
        except Exception:  # the node asked may be the one restarting
            pass
        time.sleep(1)
    return None


@pytest.mark.disruptive
@pytest.mark.once
def test_killed_node_loses_no_search(loaded_index, inventory, os_client, peer):
    victim = _nodes(inventory)[-1]
    client = os_client("app", max_retries=3, retry_on_timeout=True)
    admin = os_client("admin")
    before = admin.count(index=loaded_index)["count"]
    with SearchLoad(client, loaded_index) as load:
        time.sleep(3)
        started = time.monotonic()
        peer(victim).check_output("sudo systemctl kill --signal=SIGKILL opensearch")
        assert _wait_status(admin, {"yellow", "red"}, 90, nodes=len(_nodes(inventory)) - 1), \
            "the cluster never noticed the lost node"
        degraded = time.monotonic() - started
        # Like the vendor's unit, the role's does not restart a killed JVM by
        # itself (no restart loops): the operator (here the test) starts it.
        peer(victim).check_output("sudo systemctl start opensearch")
        assert _wait_status(admin, {"green"}, 600, nodes=len(_nodes(inventory))) == "green", \
            "not green again with every node after the node returned"
        green = time.monotonic() - started
        print(f"killed {victim}: degraded after {degraded:.1f} s, green with every node after {green:.1f} s")
    record(f"OpenSearch node killed ({victim}, SIGKILL, started again)", **load.figures(), recovered=green,
           note="straight to OpenSearch; recovered: green with every node, from the kill")
    assert load.failed == 0, f"{load.failed} of {load.ok + load.failed} searches failed: {load.errors[:3]}"
    assert load.ok > 0
    assert admin.count(index=loaded_index)["count"] == before


@pytest.mark.disruptive
@pytest.mark.once
def test_rolling_restart_loses_no_search(loaded_index, inventory, os_client):
    client = os_client("app", max_retries=3, retry_on_timeout=True)
    started = time.monotonic()
    with SearchLoad(client, loaded_index) as load:
        proc = inventory.playbook("playbooks/opensearch-rolling-restart.yml")
    record("OpenSearch rolling restart (playbook)", **load.figures(), recovered=time.monotonic() - started,
           note="straight to OpenSearch; recovered: the playbook's run, every node restarted and green")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert load.failed == 0, f"{load.failed} of {load.ok + load.failed} searches failed: {load.errors[:3]}"
    assert load.ok > 0
    assert os_client("admin").cluster.health()["status"] == "green"


@pytest.mark.disruptive
@pytest.mark.once
def test_a_hung_node_fails_no_search_and_loses_no_document(inventory, os_client, peer, lbs):
    """One node's JVM hangs for 20 s (SIGSTOP: the kernel still accepts its
    connections, nothing answers) under search load through both load
    balancers and a bounded write load: no search fails or is slow (a hung
    node costs a search one short try at the app, then another node), no
    acknowledged document is lost, the node is back and the cluster green.
    Then every app server spreads its searches over every node again
    (opensearch-py's dead-node back-off, bounded by
    SEARCHPLAT_OPENSEARCH_DEAD_TIMEOUT), measured as the searches each node
    coordinates (_nodes/usage)."""
    nodes = _nodes(inventory)
    admin = os_client("admin", timeout=60)
    elected = admin.cat.cluster_manager(format="json")[0]["node"]
    victim = next(n for n in reversed(nodes) if n != elected)
    index = f"search-hung-{uuid.uuid4().hex[:8]}"
    admin.indices.create(index=index, body={"settings": {"number_of_shards": 3, "number_of_replicas": 1}})
    writes = AckedWrites(os_client("admin", timeout=30, max_retries=3, retry_on_timeout=True), index)

    # "lb" after "opensearch", as every test that takes both.
    with disruption_lock("opensearch"), disruption_lock("lb"):
        try:
            loads = [start_hey(lb, 40, "/search?q=index", workers=2, rate_per_worker=10) for lb in lbs]
            writes.start()
            time.sleep(5)
            with peer(victim).sudo():
                peer(victim).check_output("systemctl kill --signal=SIGSTOP opensearch")
                try:
                    time.sleep(20)
                finally:
                    peer(victim).check_output("systemctl kill --signal=SIGCONT opensearch")
                    resumed = time.monotonic()
            results = [hey_result(proc) for proc in loads]
            writes.stop()
            assert _wait_status(admin, {"green"}, 300, nodes=len(nodes)) == "green", \
                f"not green with every node after {victim} answered again"

            # Balance: once the dead-node time outs have passed (10 s, then
            # 20 s for a node that failed again when tried), each node
            # coordinates its share of the app servers' searches again;
            # measured in 10 s windows of search load. (opensearch-py's own
            # back-off, 60 s and more, would fail this.)
            balanced, windows = None, []
            while balanced is None and time.monotonic() - resumed < 45:
                before = _coordinated_searches(admin)
                window = [start_hey(lb, 10, "/search?q=index", workers=2, rate_per_worker=10) for lb in lbs]
                windows += [hey_result(proc) for proc in window]
                after = _coordinated_searches(admin)
                share = {n: after.get(n, 0) - before.get(n, 0) for n in after}
                total = sum(share.values())
                if total > 0 and all(share.get(_node_name(inventory, n), 0) >= total / len(nodes) / 3 for n in nodes):
                    balanced = round(time.monotonic() - resumed)
        finally:
            writes.stop()
            peer(victim).run("sudo systemctl kill --signal=SIGCONT opensearch")
    admin.indices.refresh(index=index)
    stored = {hit["_id"] for hit in admin.search(index=index, body={"size": 10000, "_source": False})["hits"]["hits"]}
    acked = writes.ids
    missing = set(acked) - stored
    for lb, result in zip(lbs, results):
        print(f"hung {victim}, through {lb['name']}: {result.requests} searches, slowest {result.slowest:.2f} s")
        record(f"hung OpenSearch node ({victim} 20 s), via {lb['name']}", **load_figures(result),
               written=len(acked), found=len(acked) - len(missing), recovered=balanced,
               note="written: the whole run's writes; recovered: every node coordinates its share again")
    for lb, result in zip(lbs, results):
        assert result.clean(), f"{lb['name']}: {result.output[-2500:]}"
        assert result.slowest < 3, f"{lb['name']}: {result.output[-2500:]}"
    assert acked and not missing, f"{len(missing)} of {len(acked)} acknowledged documents missing: {sorted(missing)[:5]}"
    admin.indices.delete(index=index)
    assert all(r.clean() for r in windows), [r.output[-1500:] for r in windows if not r.clean()]
    print(f"searches coordinated per node in the last window: {share}; balanced {balanced} s after {victim} resumed")
    assert balanced is not None, \
        f"searches per node 45 s after {victim} resumed: {share} (each node should take about a third)"


def _node_name(inventory, name):
    return str(inventory.hostvars(name).get("opensearch_node_name") or name)


def _coordinated_searches(admin):
    """Search requests each node has taken over REST (as coordinator), by node name."""
    names = {node_id: node["name"] for node_id, node in admin.nodes.info(metric="settings")["nodes"].items()}
    usage = admin.transport.perform_request("GET", "/_nodes/usage")["nodes"]
    return {names.get(node_id, node_id): int(node.get("rest_actions", {}).get("search_action", 0))
            for node_id, node in usage.items()}
