"""Power loss: every host of the lab killed at once and started again, with
no Ansible run afterwards.

Each lab container's init gets SIGKILL (no clean shutdown, like a cut
power feed), then all start together. The platform must serve again by
itself: services enabled, the OpenSearch transport aliases back (a boot
unit, scripts/lib/lab_hosts.yml), the cluster re-formed to green, the shared
address held by one load balancer, search answered through every load
balancer, Prometheus scraping every target again; and every document whose
write was acknowledged before the loss is there (translog fsync per
request). Runs alone: it takes the whole lab (the whole_lab marker; the
other disruptive tests take the lab lock shared). Prints one `power loss:`
line with the times (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import prometheus_api
import pytest
from load import AckedWrites
from resilience import record

pytestmark = pytest.mark.groups("monitoring")

RECOVERY_LIMIT = 900  # seconds: fail rather than wait forever


def _search_ok(inventory, lb, ca) -> bool:
    names = inventory.resolved(lb, "_platform_lb_server_names")
    port = inventory.resolved(lb, "_platform_lb_https_port")
    address = inventory.address(lb) if lb in inventory.all_hosts() else lb
    probe = subprocess.run(
        ["curl", "-sf", "--max-time", "5", "--cacert", ca, "--resolve", f"{names[0]}:{port}:{address}",
         f"https://{names[0]}:{port}/search?q=inverted+index&size=1"], capture_output=True, text=True)
    try:
        return probe.returncode == 0 and json.loads(probe.stdout)["total"] > 0
    except ValueError:
        return False


def _vip_holders(inventory, peer, vip):
    return [name for name in inventory.hosts_in("loadbalancers")
            if f" {vip}/" in peer(name).run("ip -4 -o addr show").stdout]


@pytest.mark.disruptive
@pytest.mark.whole_lab
@pytest.mark.once
def test_power_loss_every_host_at_once(host, inventory, peer, os_client, platform_ca):
    hosts = inventory.all_hosts()
    lbs = inventory.hosts_in("loadbalancers")
    vip = inventory.resolved(lbs[0], "keepalived_virtual_ip") if len(lbs) > 1 else ""
    admin = os_client("admin", timeout=30)
    index = f"search-powerloss-{uuid.uuid4().hex[:8]}"
    admin.indices.create(index=index, body={"settings": {"number_of_shards": 3, "number_of_replicas": 1}})

    # Writes keep coming until the power goes: each acknowledged one must survive.
    writes = AckedWrites(os_client("admin", timeout=5, max_retries=0), index, prefix="p", pause=0,
                         body=lambda i: {"n": i, "title": f"power loss {i}"})

    assert all(_search_ok(inventory, lb, platform_ca) for lb in lbs), "the platform does not serve before the test"

    writes.start()
    time.sleep(5)
    containers = [f"searchlab-{name}" for name in hosts]
    subprocess.run(["docker", "kill", "--signal", "KILL", *containers], check=True, capture_output=True)
    before = writes.stop().ids
    assert 20 < len(before) < 9000, f"{len(before)} writes acknowledged before the loss"
    subprocess.run(["docker", "start", *containers], check=True, capture_output=True)
    start = time.monotonic()

    done: dict[str, float] = {}
    pending = {f"search via {lb}" for lb in lbs} | {"cluster green", "prometheus targets up"}
    if vip:
        pending.add("shared address serves")
    prom = next(h for h in inventory.hosts_in("monitoring"))
    while pending and time.monotonic() - start < RECOVERY_LIMIT:
        for what in sorted(pending):
            ok = False
            try:
                if what.startswith("search via "):
                    ok = _search_ok(inventory, what.removeprefix("search via "), platform_ca)
                elif what == "cluster green":
                    health = os_client("admin", timeout=5).cluster.health()
                    ok = health["status"] == "green" and health["number_of_nodes"] == len(inventory.hosts_in("opensearch"))
                elif what == "shared address serves":
                    ok = len(_vip_holders(inventory, peer, vip)) == 1 and _search_ok(
                        inventory, lbs[0], platform_ca) and subprocess.run(
                        ["curl", "-sf", "--max-time", "5", "--cacert", platform_ca, "--resolve",
                         f"{inventory.resolved(lbs[0], '_platform_lb_server_names')[0]}:"
                         f"{inventory.resolved(lbs[0], '_platform_lb_https_port')}:{vip}",
                         f"https://{inventory.resolved(lbs[0], '_platform_lb_server_names')[0]}:"
                         f"{inventory.resolved(lbs[0], '_platform_lb_https_port')}/"],
                        capture_output=True).returncode == 0
                elif what == "prometheus targets up":
                    result = prometheus_api.get_json(peer(prom), inventory, "/api/v1/query?query=up")
                    values = [s["value"][1] for s in result["data"]["result"]]
                    ok = bool(values) and all(v == "1" for v in values)
            except Exception:  # not back yet
                ok = False
            if ok:
                done[what] = time.monotonic() - start
                pending.discard(what)
        time.sleep(3)

    print("power loss: " + ", ".join(f"{what} after {secs:.0f} s" for what, secs in sorted(done.items(), key=lambda i: i[1]))
          + f"; {len(before)} writes acknowledged before the loss")
    found: set[str] = set()
    if not pending:
        admin = os_client("admin", timeout=60)
        admin.indices.refresh(index=index)
        found = {hit["_id"] for hit in admin.search(index=index, body={"query": {"match_all": {}}, "_source": False},
                                                     size=10000)["hits"]["hits"]}
    record(f"power loss, all {len(hosts)} hosts at once, no Ansible run", written=len(before),
           found=len(set(before) & found) if not pending else None,
           recovered=max(done.values()) if not pending else None,
           note="recovered: " + ", ".join(f"{what} {secs:.0f} s" for what, secs in sorted(done.items(), key=lambda i: i[1])))
    assert not pending, f"not back after {RECOVERY_LIMIT} s without Ansible: {sorted(pending)} (back: {done})"
    missing = set(before) - found
    assert not missing, f"{len(missing)} of {len(before)} acknowledged writes lost: {sorted(missing)[:5]}"
    admin.indices.delete(index=index)
