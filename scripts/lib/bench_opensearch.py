"""OpenSearch benchmark (scripts/bench opensearch): prints numbers, asserts nothing.

1. cluster start to green: every node's service is stopped, then all are
   started at once; time until the cluster is green with every node.
2. bulk indexing: a generated corpus (fixed seed) into a fresh index (3
   shards, 1 replica) with opensearch-py's streaming bulk, as the app user;
   documents per second including the final refresh.
3. search: multi-field match queries of one or two corpus words, sequential,
   as the app user; p50/p95/p99 latency (client side) and queries/s.
4. snapshot and restore: the bench index snapshotted into the platform's
   snapshot repository (a shared file system: NFS for users; in the lab a
   bind-mounted directory, the VM's kernel has no nfsd) as the backup
   user, then restored under a new name as the admin user; wall time of
   each (wait_for_completion) and the restored document count.

Usage: python bench_opensearch.py INVENTORY [DOCS] [QUERIES]
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import time

import yaml
from bench_inventory import hostvars, secret
from opensearchpy import OpenSearch, helpers

WORDS = ("search platform cluster shard replica node index query ranking relevance "
         "latency throughput snapshot restore balancer upstream certificate firewall "
         "monitoring alert backup retention analyzer token field mapping document "
         "segment merge refresh flush heap garbage collector thread pool queue").split()


def main():
    inventory = sys.argv[1]
    docs = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    queries = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    groups = yaml.safe_load(subprocess.run(
        ["ansible-inventory", "-i", inventory, "--list", "--export"],
        check=True, capture_output=True, text=True).stdout)
    nodes = sorted(groups["opensearch"]["hosts"])
    addresses = {n: hostvars(inventory, n)["private_address"] for n in nodes}
    ca = f"{inventory}/.pki/ca.crt"

    def client(user, password):
        return OpenSearch(hosts=[{"host": a, "port": 9200} for a in addresses.values()],
                          http_auth=(user, password), use_ssl=True, verify_certs=True,
                          ca_certs=ca, ssl_show_warn=False, timeout=60, max_retries=3,
                          retry_on_timeout=True)

    admin = client("admin", secret(inventory, nodes[0], "opensearch_admin_password"))
    app = client(str(hostvars(inventory, nodes[0]).get("opensearch_app_user", "searchapp")),
                 secret(inventory, nodes[0], "opensearch_app_password"))

    # 1. start to green
    ansible = ["ansible", "-i", inventory, "opensearch", "-b", "-m", "ansible.builtin.systemd_service"]
    subprocess.run(ansible + ["-a", "name=opensearch state=stopped"], check=True, capture_output=True)
    start = time.monotonic()
    subprocess.run(ansible + ["-a", "name=opensearch state=started"], check=True, capture_output=True)
    while True:
        try:
            h = admin.cluster.health()
            if h["status"] == "green" and h["number_of_nodes"] == len(nodes):
                break
        except Exception:
            pass
        time.sleep(0.5)
    to_green = time.monotonic() - start
    print(f"{'cluster start to green (' + str(len(nodes)) + ' nodes, all started at once)':58s} {to_green:8.1f} s")

    # 2. bulk indexing
    rng = random.Random(42)
    index = f"search-bench-{int(time.time())}"
    admin.indices.create(index=index, body={"settings": {"number_of_shards": 3, "number_of_replicas": 1}})

    def corpus():
        for i in range(docs):
            yield {"_index": index, "_id": str(i),
                   "title": " ".join(rng.choices(WORDS, k=4)),
                   "body": " ".join(rng.choices(WORDS, k=40))}

    start = time.monotonic()
    ok = sum(1 for success, _ in helpers.streaming_bulk(app, corpus(), chunk_size=1000) if success)
    app.indices.refresh(index=index)
    took = time.monotonic() - start
    print(f"{'bulk indexing (' + str(docs) + ' docs, 3 shards x 2 copies, app user)':58s} {ok / took:8.0f} docs/s")

    # 3. search latency
    latencies = []
    start = time.monotonic()
    for _ in range(queries):
        q = " ".join(rng.choices(WORDS, k=rng.choice((1, 2))))
        t = time.monotonic()
        app.search(index=index, body={"query": {"multi_match": {"query": q, "fields": ["title^2", "body"]}},
                                      "size": 10})
        latencies.append((time.monotonic() - t) * 1000)
    elapsed = time.monotonic() - start
    qs = statistics.quantiles(latencies, n=100)
    print(f"{'search (' + str(queries) + ' multi_match queries, sequential, app user)':58s} "
          f"{queries / elapsed:8.0f} q/s   p50 {qs[49]:.1f} ms   p95 {qs[94]:.1f} ms   p99 {qs[98]:.1f} ms")

    # 4. snapshot and restore
    repo = str(hostvars(inventory, nodes[0]).get("opensearch_snapshot_repository_name", "searchplat-fs"))
    backup = client(str(hostvars(inventory, nodes[0]).get("opensearch_backup_user", "backup")),
                    secret(inventory, nodes[0], "opensearch_backup_password"))
    snapshot, restored = f"{index}-snap", f"{index}-restored"
    size = admin.indices.stats(index=index, metric="store")["_all"]["primaries"]["store"]["size_in_bytes"]
    start = time.monotonic()
    backup.snapshot.create(repository=repo, snapshot=snapshot, body={"indices": index, "include_global_state": False},
                           params={"wait_for_completion": "true"}, request_timeout=1800)
    took = time.monotonic() - start
    print(f"{'snapshot (' + str(docs) + ' docs, ' + str(size // 2**20) + ' MiB primaries, backup user)':58s} "
          f"{took:8.1f} s")
    start = time.monotonic()
    admin.snapshot.restore(repository=repo, snapshot=snapshot,
                           body={"indices": index, "rename_pattern": "(.+)", "rename_replacement": restored},
                           params={"wait_for_completion": "true"}, request_timeout=1800)
    admin.cluster.health(index=restored, params={"wait_for_status": "green", "timeout": "600s"}, request_timeout=610)
    took = time.monotonic() - start
    count = admin.count(index=restored)["count"]
    print(f"{'restore into a new index, to green (' + str(count) + ' docs restored)':58s} {took:8.1f} s")
    admin.indices.delete(index=restored)
    backup.snapshot.delete(repository=repo, snapshot=snapshot, request_timeout=600)
    admin.indices.delete(index=index)


if __name__ == "__main__":
    main()
