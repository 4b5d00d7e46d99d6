"""Backups of the search cluster (roles/opensearch_snapshots, roles/opensearch
tasks_from restore) on every OpenSearch node.

Node checks run on each node. The job's behaviour runs once (on the tier's
first host, marked `once`) against the lab's three-node cluster: one
snapshot per run whichever node is elected, retention, the restore drill;
the disruptive ones (a failed job raising its alert end to end, the full
disaster drill) run in the second pass under the cluster's lock.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time
import uuid

import pytest
from disruption import active_alerts, alert_report, disruption_lock, wait_until
from load import AckedWrites
from resilience import record

pytestmark = pytest.mark.groups("opensearch")

SCRIPT = "/usr/local/sbin/searchplat-opensearch-snapshot"
CONFIG = "/etc/searchplat/opensearch-snapshot.conf"
CRON = "/etc/cron.d/searchplat-opensearch-snapshot"
METRICS = "/var/lib/prometheus/node-exporter/opensearch_snapshot.prom"
DRILL_METRICS = "/var/lib/prometheus/node-exporter/opensearch_snapshot_drill.prom"


def _name(host) -> str:
    return host.backend.get_hostname()


def _conf(host) -> dict:
    with host.sudo():
        text = host.check_output(f"cat {CONFIG}")
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#") and "=" in line)


def _metrics(node, path) -> dict:
    with node.sudo():
        text = node.check_output(f"cat {path}")
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key.split("{")[0]] = float(value)
    return out


def _elected(admin) -> str:
    return admin.cat.cluster_manager(format="json")[0]["node"]


def _run(node, *args, config=None):
    env = f"SEARCHPLAT_SNAPSHOT_CONFIG={config} " if config else ""
    with node.sudo():
        return node.run(f"{env}{SCRIPT} {' '.join(args)}")


def _managed(admin, prefix):
    snaps = admin.snapshot.get(repository=_repo(admin), snapshot=f"{prefix}*",
                               params={"ignore_unavailable": "true"}).get("snapshots", [])
    return sorted(snaps, key=lambda s: s["start_time_in_millis"])


def _repo(admin) -> str:
    return next(iter(admin.snapshot.get_repository()))


def _scratch_config(node, **changes) -> str:
    """A copy of the job's settings with some values changed (root only, on
    tmpfs); the caller removes it."""
    path = f"/run/searchplat-test-{uuid.uuid4().hex[:8]}.conf"
    sed = " ".join(f"-e 's|^{k}=.*|{k}={v}|'" for k, v in changes.items())
    with node.sudo():
        node.check_output(f"umask 077 && sed {sed} {CONFIG} > {path}")
    return path


@pytest.fixture
def cluster_disruption():
    with disruption_lock("opensearch"):
        yield


@pytest.fixture
def snapshot_disruption(cluster_disruption):
    """A snapshot run that must succeed: its after-command backs the
    repository up to the backup host, so no test may break that tier
    meanwhile (the "backup" lock, after "opensearch")."""
    with disruption_lock("backup"):
        yield


@pytest.fixture
def search_outage():
    """The whole search cluster goes away: every app server's /ready fails,
    so HAProxy takes them all out and searches fail; the load tests through
    the load balancers (the "lb" lock) and the tests that take an app server
    out and wait for it to be ready again (the "app" lock) must not run
    meanwhile; its snapshot job backs the repository up to the backup host
    (the "backup" lock: no test breaks that tier meanwhile). Locks in the
    order opensearch, lb, app, logging, backup (every test)."""
    with disruption_lock("opensearch"), disruption_lock("lb"), disruption_lock("app"), disruption_lock("backup"):
        yield


# --- every node --------------------------------------------------------------------

def test_snapshot_job_installed_on_every_node(host):
    script = host.file(SCRIPT)
    assert script.exists and script.user == "root" and script.mode == 0o755
    conf = host.file(CONFIG)
    assert conf.user == "root" and conf.mode == 0o600
    cron = host.file(CRON)
    assert cron.exists and cron.user == "root" and cron.mode == 0o644
    content = cron.content_string
    assert f"{SCRIPT} snapshot" in content and f"{SCRIPT} drill" in content and "flock" in content
    # The password lives in the root-only settings, nowhere else.
    password = _conf(host)["OPENSEARCH_PASSWORD"]
    assert len(password) >= 8 and password not in content


# --- the job on the cluster ------------------------------------------------------------

@pytest.mark.once
def test_one_snapshot_per_run_whichever_node_is_elected(host, inventory, peer, admin, cluster_disruption):
    nodes = inventory.hosts_in("opensearch")
    prefix = _conf(host)["PREFIX"]
    before = {s["snapshot"] for s in _managed(admin, prefix)}
    results = {}

    def run(node):
        results[node] = _run(peer(node), "snapshot")

    threads = [threading.Thread(target=run, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.rc == 0 for r in results.values()), {n: r.stdout + r.stderr for n, r in results.items()}
    new = [s for s in _managed(admin, prefix) if s["snapshot"] not in before]
    assert len(new) == 1, f"expected one new snapshot, got {[s['snapshot'] for s in new]}"
    assert new[0]["state"] == "SUCCESS"
    elected = _elected(admin)
    acted = [n for n, r in results.items() if "SUCCESS" in r.stdout]
    assert acted == [elected], f"acted: {acted}, elected: {elected}"
    metrics = _metrics(peer(elected), METRICS)
    assert metrics["searchplat_opensearch_snapshot_success"] == 1
    assert time.time() - metrics["searchplat_opensearch_snapshot_last_success_timestamp_seconds"] < 600
    # The security configuration was backed up beside it.
    security_dir = _conf(host)["SECURITY_BACKUP_DIR"]
    with peer(elected).sudo():
        listing = peer(elected).check_output(f"ls {security_dir}/{new[0]['snapshot']}")
    assert "internal_users.yml" in listing and "roles.yml" in listing


@pytest.mark.once
def test_retention_keeps_at_most_max_count_and_never_fewer_than_min(host, peer, admin, cluster_disruption):
    elected = peer(_elected(admin))
    prefix = f"acctest-{uuid.uuid4().hex[:6]}-"
    config = _scratch_config(elected, PREFIX=prefix, MAX_COUNT=2, MIN_COUNT=1, SECURITY_BACKUP=0, METRICS_DIR="", AFTER_COMMAND="")
    try:
        for _ in range(3):
            result = _run(elected, "snapshot", config=config)
            assert result.rc == 0, result.stdout + result.stderr
            time.sleep(1.1)  # distinct names (one per second)
        kept = _managed(admin, prefix)
        assert len(kept) == 2, [s["snapshot"] for s in kept]
        # Everything is older than the age limit now: only the newest min_count stays.
        aged = _scratch_config(elected, PREFIX=prefix, MAX_COUNT=2, MIN_COUNT=1, MAX_AGE_DAYS="0.0000001",
                               SECURITY_BACKUP=0, METRICS_DIR="", AFTER_COMMAND="")
        try:
            result = _run(elected, "snapshot", config=aged)
            assert result.rc == 0, result.stdout + result.stderr
        finally:
            with elected.sudo():
                elected.run(f"rm -f {aged}")
        kept = _managed(admin, prefix)
        assert len(kept) == 1 and kept[0]["state"] == "SUCCESS", [s["snapshot"] for s in kept]
    finally:
        with elected.sudo():
            elected.run(f"rm -f {config}")
        for snap in _managed(admin, prefix):
            admin.snapshot.delete(repository=_repo(admin), snapshot=snap["snapshot"])


@pytest.mark.once
def test_restore_drill_restores_the_latest_snapshot_without_loss(host, peer, admin, cluster_disruption):
    elected = peer(_elected(admin))
    prefix = _conf(host)["PREFIX"]
    if not [s for s in _managed(admin, prefix) if s["state"] == "SUCCESS"]:
        result = _run(elected, "snapshot")
        assert result.rc == 0, result.stdout + result.stderr
    result = _run(elected, "drill")
    assert result.rc == 0, result.stdout + result.stderr
    metrics = _metrics(elected, DRILL_METRICS)
    assert metrics["searchplat_opensearch_drill_success"] == 1
    assert metrics["searchplat_opensearch_drill_documents_lost"] == 0
    assert metrics["searchplat_opensearch_drill_documents_differ"] == 0
    assert metrics["searchplat_opensearch_drill_documents_restored"] > 0
    drill_prefix = _conf(host)["DRILL_PREFIX"]
    assert not admin.indices.get(index=f"{drill_prefix}*", params={"ignore_unavailable": "true"}), \
        "the drill left its copies behind"


# --- disruptive --------------------------------------------------------------------------

@pytest.mark.disruptive
@pytest.mark.once
def test_a_failed_snapshot_raises_its_alert_and_recovers(host, inventory, peer, admin, snapshot_disruption):
    elected = peer(_elected(admin))
    broken = _scratch_config(elected, OPENSEARCH_PASSWORD="not-the-password")
    try:
        result = _run(elected, "snapshot", config=broken)
    finally:
        with elected.sudo():
            elected.run(f"rm -f {broken}")
    assert result.rc != 0 and "FAILED" in result.stdout, result.stdout
    assert _metrics(elected, METRICS)["searchplat_opensearch_snapshot_success"] == 0
    assert wait_until(lambda: active_alerts(inventory, peer, "OpenSearchSnapshotFailed"), 180), \
        "OpenSearchSnapshotFailed never reached Alertmanager: " + alert_report(inventory, peer, "OpenSearchSnapshotFailed")
    result = _run(elected, "snapshot")
    assert result.rc == 0, result.stdout + result.stderr
    assert wait_until(lambda: not active_alerts(inventory, peer, "OpenSearchSnapshotFailed"), 300), \
        "OpenSearchSnapshotFailed did not resolve after a good run: " + alert_report(inventory, peer, "OpenSearchSnapshotFailed")


def _playbook(inventory, *args, timeout=2400):
    started = time.monotonic()
    proc = inventory.playbook(*args, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return time.monotonic() - started


def _checksums(client, index) -> dict[str, str]:
    out = {}
    for hit in _scan(client, index):
        out[hit["_id"]] = hashlib.sha256(json.dumps(hit["_source"], sort_keys=True).encode()).hexdigest()
    return out


def _scan(client, index):
    page = client.search(index=index, body={"size": 1000, "sort": ["_doc"]}, params={"scroll": "2m"})
    scroll = page["_scroll_id"]
    try:
        while page["hits"]["hits"]:
            yield from page["hits"]["hits"]
            page = client.scroll(body={"scroll": "2m", "scroll_id": scroll})
            scroll = page["_scroll_id"]
    finally:
        client.clear_scroll(body={"scroll_id": scroll}, ignore=(404,))


@pytest.mark.disruptive
@pytest.mark.once
def test_disaster_recovery_every_document_back(host, inventory, peer, os_client, lbs, search_outage):
    """Index a known corpus while writes keep coming, take the scheduled
    snapshot, destroy the data of every node (the cluster is gone), converge
    the tier and restore: every document acknowledged before the snapshot is
    back with its checksum, the cluster is green and the app serves the
    restored index through the load balancers. Prints RPO and RTO."""
    admin = os_client("admin", timeout=120)
    nodes = inventory.hosts_in("opensearch")
    corpus = "search-dr-corpus"
    live = "search-dr-live"
    admin.indices.delete(index=f"{corpus},{live}", params={"ignore_unavailable": "true"})
    admin.indices.create(index=corpus, body={"settings": {"number_of_shards": 3, "number_of_replicas": 1}})
    docs = [{"title": f"disaster drill {i}", "body": hashlib.sha256(str(i).encode()).hexdigest() * 4, "n": i}
            for i in range(3000)]
    admin.bulk(body="".join(f'{{"index":{{"_index":"{corpus}","_id":"d{i}"}}}}\n{json.dumps(d)}\n'
                            for i, d in enumerate(docs)), params={"refresh": "true"}, request_timeout=300)
    expected = _checksums(admin, corpus)
    assert len(expected) == len(docs)

    # A bounded write load (about 10 documents/s) that keeps going across the snapshot.
    writes = AckedWrites(os_client("admin", timeout=30), live, limit=2000, params={"refresh": "true"}).start()
    time.sleep(5)
    elected = peer(admin.cat.cluster_manager(format="json")[0]["node"])
    result = _run(elected, "snapshot")
    assert result.rc == 0, result.stdout + result.stderr
    # The snapshot's point in time is its start: what was acknowledged before
    # it must come back; what came later is the RPO window.
    snapshot_start = _managed(admin, _conf(host)["PREFIX"])[-1]["start_time_in_millis"] / 1000
    time.sleep(5)
    written = writes.stop().acked

    # The disaster: every node's data is gone.
    disaster = time.monotonic()
    for node in nodes:
        with peer(node).sudo():
            peer(node).check_output("systemctl stop opensearch && rm -rf /var/lib/opensearch/*")

    # Recovery: the tier converges on its own hosts (a new cluster forms,
    # security from the role's files, the repository registered again), then
    # the restore: the runbook's commands (docs/operations.md).
    converge = _playbook(inventory, "site.yml", "--tags", "opensearch", "--limit", "opensearch:snapshot_server")
    restore = _playbook(inventory, "playbooks/restore-opensearch.yml", "-e", "opensearch_restore_overwrite=true")
    admin = os_client("admin", timeout=120)
    assert admin.cluster.health(params={"wait_for_status": "green", "timeout": "300s"}, request_timeout=320)["status"] == "green"
    green = time.monotonic() - disaster

    assert _checksums(admin, corpus) == expected, "the restored corpus differs from the one indexed"
    restored_live = {hit["_id"] for hit in _scan(admin, live)}
    before_snapshot = {doc_id for doc_id, at in written if at < snapshot_start}
    missing = before_snapshot - restored_live
    assert not missing, f"{len(missing)} documents acknowledged before the snapshot are missing: {sorted(missing)[:5]}"
    lost_after = len([1 for doc_id, at in written if at >= snapshot_start and doc_id not in restored_live])

    # The app serves the restored data (the seeded corpus) through each load balancer.
    for lb in lbs:
        probe = subprocess.run(
            ["curl", "-sf", "--max-time", "20", "--cacert", lb["ca"], "--resolve",
             f"{lb['server_name']}:{lb['port']}:{lb['address']}",
             f"https://{lb['server_name']}:{lb['port']}/search?q=inverted+index&size=5"], capture_output=True, text=True)
        assert probe.returncode == 0, (lb["name"], probe.stdout[:300], probe.stderr)
        assert json.loads(probe.stdout)["total"] > 0, (lb["name"], probe.stdout[:300])
    serving = time.monotonic() - disaster
    record("disaster: every node's data gone, restored from the snapshot", written=len(before_snapshot),
           found=len(before_snapshot & restored_live), recovered=serving,
           note=f"written: acknowledged before the snapshot; {lost_after} written after it lost (RPO window); "
                f"recovered: serving through every load balancer (RTO)")
    print(f"disaster drill: {len(expected)} corpus documents back with equal checksums; "
          f"{len(before_snapshot)} writes before the snapshot all back, {lost_after} written after it lost (RPO window); "
          f"converge {converge:.0f} s, restore {restore:.0f} s, green after {green:.0f} s, serving after {serving:.0f} s (RTO)")
    admin.indices.delete(index=f"{corpus},{live}", params={"ignore_unavailable": "true"})
