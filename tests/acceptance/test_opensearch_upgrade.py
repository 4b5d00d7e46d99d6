"""Rolling upgrade of OpenSearch under load (playbooks/opensearch-upgrade.yml).

The lab starts at the version of inventories/lab/group_vars/all/opensearch.yml;
its `lab_downloads` also hold the archive and security plugin of a later
release, the upgrade target. The test does what the runbook says
(docs/operations.md, "Upgrading OpenSearch"): it raises the inventory's
version (`lab_opensearch_version` in the generated, git-ignored
lab_opensearch_version.yml beside opensearch.yml, which scripts/lab removes
with the lab) and runs the playbook, while one client searches every node
of the search cluster in a loop and another writes one document at a time.
Then every node of both clusters (the search cluster and the log store)
runs the target, no search failed, every acknowledged write is there, and
the cluster is green. Then bad input is refused before anything changes:
the previous version (a downgrade) and a version the inventory has no files
for; each run changes nothing and the nodes keep the target.

Lab only: it writes the lab's inventory. A lab that already runs the target
cannot be upgraded again: the test then fails and says so (scripts/lab down,
then a new lab).
"""

from __future__ import annotations

import os
import re
import time
import uuid

import pytest
import yaml
from disruption import disruption_lock
from load import AckedWrites, SearchLoad
from resilience import record

pytestmark = pytest.mark.groups("opensearch")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LAB_VARS = os.path.join(ROOT, "inventories", "lab", "group_vars", "all")


def _versions_downloaded() -> list[str]:
    """The OpenSearch releases whose archive the lab fetches, oldest first."""
    with open(os.path.join(LAB_VARS, "opensearch.yml")) as f:
        downloads = yaml.safe_load(f)["lab_downloads"]
    found = {m.group(1) for d in downloads if (m := re.search(r"/opensearch-(\d+\.\d+\.\d+)\.zip$", d["url"]))}
    return sorted(found, key=lambda v: tuple(int(p) for p in v.split(".")))


def _node_versions(client) -> dict[str, str]:
    return {n["name"]: n["version"] for n in client.cat.nodes(format="json", h="name,version")}


def _recap(out: str) -> dict[str, int]:
    """changed= per host from the play recap."""
    return {host: int(changed) for host, changed in re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", out, re.M)}


@pytest.fixture
def upgrade_disruption():
    """Every node of the search cluster and the log store restarts: the
    cluster's lock, and logging's (the log store is one of the clusters)."""
    with disruption_lock("opensearch"), disruption_lock("logging"):
        yield


@pytest.mark.disruptive
@pytest.mark.once
def test_rolling_upgrade_under_load_then_bad_versions_refused(inventory, os_client, upgrade_disruption):
    assert inventory.path.rstrip("/").endswith(os.path.join("inventories", "lab")), \
        "this test upgrades the lab (it writes the lab inventory's version): run it with inventories/lab"
    versions = _versions_downloaded()
    assert len(versions) >= 2, f"lab_downloads holds one OpenSearch release ({versions}): nothing to upgrade to"
    previous, target = versions[-2], versions[-1]
    admin = os_client("admin", timeout=60)
    before = _node_versions(admin)
    assert set(before.values()) == {previous}, \
        (f"the lab runs {before}, not {previous} everywhere: an upgraded lab cannot be upgraded again "
         "(scripts/lab down, then scripts/lab up)")

    index = f"search-upgrade-{uuid.uuid4().hex[:8]}"
    admin.indices.create(index=index, body={"settings": {"number_of_shards": 3, "number_of_replicas": 1}})
    admin.index(index=index, id="seed", body={"title": "doc seed"}, params={"refresh": "true"})
    version_file = os.path.join(LAB_VARS, "lab_opensearch_version.yml")
    with open(version_file, "w") as f:
        f.write("---\n# Written by tests/acceptance/test_opensearch_upgrade.py; scripts/lab removes it with the lab.\n"
                f'lab_opensearch_version: "{target}"\n')

    searcher = os_client("app", max_retries=3, retry_on_timeout=True)
    writes = AckedWrites(os_client("admin", timeout=30, max_retries=3, retry_on_timeout=True), index)
    started = time.monotonic()
    with SearchLoad(searcher, index) as load, writes:
        time.sleep(3)
        upgrade = inventory.playbook("playbooks/opensearch-upgrade.yml")
        time.sleep(3)
    took = time.monotonic() - started
    after = _node_versions(admin)
    admin.indices.refresh(index=index)
    stored = {hit["_id"] for hit in admin.search(index=index, body={"size": 10000, "_source": False})["hits"]["hits"]}
    acked = writes.ids
    record(f"OpenSearch rolling upgrade {previous} -> {target} (playbook)", **load.figures(), written=len(acked),
           found=len(set(acked) & stored), recovered=took,
           note="straight to OpenSearch; recovered: the playbook's run, every node of both clusters upgraded")
    assert upgrade.returncode == 0, upgrade.stdout[-4000:] + upgrade.stderr[-2000:]
    assert set(after.values()) == {target}, after
    store_nodes = [h for h in inventory.hosts_in("logging")
                   if inventory.resolved(h, "platform_logging_store") == "dedicated"]
    for node in store_nodes:
        assert f"{node}: OpenSearch {previous} -> {target}" in upgrade.stdout, f"the log store on {node} was not upgraded"
    assert load.failed == 0, f"{load.failed} of {load.ok + load.failed} searches failed: {load.errors[:3]}"
    assert load.ok > 0
    missing = set(acked) - stored
    assert acked and not missing, f"{len(missing)} of {len(acked)} acknowledged documents missing: {sorted(missing)[:5]}"
    assert admin.cluster.health()["status"] == "green"
    admin.indices.delete(index=index)

    # Bad input, refused before any change: the previous version (a
    # downgrade: its files are there) and a version without files.
    unknown = f"{target.rsplit('.', 1)[0]}.{int(target.rsplit('.', 1)[1]) + 90}"
    for version, expected in ((previous, "would be a downgrade, which OpenSearch refuses"),
                              (unknown, "an archive is never installed unchecked")):
        refused = inventory.playbook("playbooks/opensearch-upgrade.yml", "-e", f"lab_opensearch_version={version}")
        out = refused.stdout
        assert refused.returncode != 0, f"{version} was not refused:\n{out[-3000:]}"
        assert expected in re.sub(r"\s+", " ", out), f"{version}: not the expected message:\n{out[-3000:]}"
        changed = _recap(out)
        assert changed and not any(changed.values()), f"{version}: something changed: {changed}"
    assert set(_node_versions(admin).values()) == {target}
