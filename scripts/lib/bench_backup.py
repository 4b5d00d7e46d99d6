"""Backup benchmark (scripts/bench backup): prints numbers, asserts nothing.

1. OpenSearch snapshot: the scheduled job run on every node (the elected
   cluster manager acts): its duration and the snapshot's size;
2. restic throughput: SIZE_MB of incompressible data backed up from an app
   server into its repository on the backup host (HTTPS, append-only); and
   the snapshot repository's own backup right after the snapshot;
3. offsite copy: the backup host's job copying every repository to the lab's
   S3 endpoint;
4. the full disaster drill (tests/acceptance/test_backup.py): every node's
   data destroyed, converge, restore: time to green and to serving.
Then RPO and RTO against the targets of the platform's guides (24 h, 1 h).

Usage: python bench_backup.py INVENTORY [SIZE_MB]
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import yaml


def docker(host, script, check=True):
    return subprocess.run(["docker", "exec", f"searchlab-{host}", "sh", "-c", script],
                          capture_output=True, text=True, check=check)


def metric(host, name, key):
    text = docker(host, f"cat /var/lib/prometheus/node-exporter/{name}.prom").stdout
    for line in text.splitlines():
        if line.startswith(key):
            return float(line.rsplit(" ", 1)[1])
    return float("nan")


def main():
    inventory = sys.argv[1]
    size_mb = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    inv = yaml.safe_load(subprocess.run(["ansible-inventory", "-i", inventory, "--list", "--export"],
                                        check=True, capture_output=True, text=True).stdout)
    nodes = sorted(inv["opensearch"]["hosts"])
    server = sorted(inv["backup"]["hosts"])[0]
    app = sorted(inv["app_servers"]["hosts"])[0]
    rows = []

    # 1. snapshot, by whichever node is elected
    elected = None
    for node in nodes:
        out = docker(node, "/usr/local/sbin/searchplat-opensearch-snapshot snapshot").stdout
        if "SUCCESS" in out:
            elected = node
    snap_s = metric(elected, "opensearch_snapshot", "searchplat_opensearch_snapshot_duration_seconds")
    rows.append(("snapshot job (elected node, incl. security backup)", f"{snap_s:.1f} s"))

    # 2. restic throughput from an app server, and the snapshot repository after the snapshot
    env = ("RESTIC_REPOSITORY_FILE=/etc/backup-client/repository RESTIC_PASSWORD_FILE=/etc/backup-client/password "
           "restic --cacert /etc/ssl/searchplat/ca.crt --no-cache")
    docker(app, f"rm -rf /var/tmp/bench-backup && mkdir -p /var/tmp/bench-backup && "
                f"head -c {size_mb}M /dev/urandom > /var/tmp/bench-backup/random.bin")
    t0 = time.monotonic()
    docker(app, f"{env} backup --tag bench /var/tmp/bench-backup >/dev/null")
    secs = time.monotonic() - t0
    rows.append((f"restic backup, {size_mb} MiB new data, {app} -> {server}", f"{secs:.1f} s, {size_mb / secs:.1f} MiB/s"))
    docker(app, "rm -rf /var/tmp/bench-backup")
    t0 = time.monotonic()
    docker(elected, "/usr/local/sbin/backup-client-run opensearch-snapshots")
    secs = time.monotonic() - t0
    added = metric(elected, "backup_client_opensearch-snapshots",
                   'searchplat_backup_added_bytes{set="opensearch-snapshots"}')
    rows.append(("snapshot repository backup (after the snapshot)", f"{secs:.1f} s, {added / 2**20:.1f} MiB added"))

    # 3. offsite copy of every repository
    t0 = time.monotonic()
    docker(server, "/usr/local/sbin/backup-server-job offsite")
    rows.append(("offsite copy of every repository to S3", f"{time.monotonic() - t0:.1f} s"))

    # 4. the full disaster drill
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-s", "-q", "--hosts=ansible://all",
         f"--ansible-inventory={inventory}", "tests/acceptance/test_backup.py", "-k", "disaster"],
        cwd=root, capture_output=True, text=True, env=dict(os.environ, SEARCHPLAT_ACCEPTANCE_STRICT="1"))
    line = next((l for l in proc.stdout.splitlines() if l.startswith("disaster drill:")), "")
    green = re.search(r"green after (\d+) s", line)
    serving = re.search(r"serving after (\d+) s", line)
    rows.append(("disaster drill", line or "FAILED (the test's output follows the table)"))

    print("backup benchmark (lab)")
    for name, value in rows:
        print(f"{name:56s} {value}")
    print(f"{'RPO (default schedule: hourly snapshots) vs target 24 h':56s} <= 1 h + snapshot duration")
    if serving:
        print(f"{'RTO (every node lost, to serving) vs target 1 h':56s} {int(serving.group(1))} s "
              f"(green after {green.group(1)} s)")
    if not line:
        print(proc.stdout[-6000:] + proc.stderr[-2000:])
        sys.exit(1)


if __name__ == "__main__":
    main()
