"""Central logging benchmark (scripts/bench logging): prints numbers, asserts nothing.

1. end-to-end throughput: every host except the relay writes LINES lines
   with a unique marker into its journal at once (logger, as fast as it
   goes); the time from the first write until all of them are searchable in
   the log store, and events per second over that time;
2. latency: SAMPLES single lines, one every 2 s from rotating hosts; for each,
   the time from write to searchable (polled every 0.25 s): p50, p95, max.

Runs against the lab (docker exec into the lab's containers, the log store's
HTTP API from the controller as the read-only logs user).

Usage: python bench_logging.py INVENTORY [LINES] [SAMPLES]
"""

from __future__ import annotations

import base64
import json
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import yaml
from bench_inventory import hostvars, secret


class Store:
    def __init__(self, inventory, relay):
        hv = hostvars(inventory, relay)
        self.url = f"https://{hv['private_address']}:9200"
        self.auth = "Basic " + base64.b64encode(
            f"logreader:{secret(inventory, relay, 'platform_logging_reader_password')}".encode()).decode()
        self.ctx = ssl.create_default_context(cafile=f"{inventory}/.pki/ca.crt")

    def count(self, phrase):
        body = json.dumps({"query": {"match_phrase": {"message": phrase}}}).encode()
        req = urllib.request.Request(self.url + "/logs-*/_count", data=body, method="POST",
                                     headers={"Authorization": self.auth, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=self.ctx, timeout=30) as resp:
            return json.loads(resp.read())["count"]


def docker(host, script):
    return subprocess.run(["docker", "exec", f"searchlab-{host}", "sh", "-c", script],
                          capture_output=True, text=True, check=True)


def main():
    inventory = sys.argv[1]
    lines = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    samples = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    inv = yaml.safe_load(subprocess.run(["ansible-inventory", "-i", inventory, "--list", "--export"],
                                        check=True, capture_output=True, text=True).stdout)
    relay = sorted(inv["logging"]["hosts"])[0]
    hosts = sorted(h for h in inv["_meta"]["hostvars"] if h != relay)
    store = Store(inventory, relay)

    marker = f"bench-{uuid.uuid4().hex[:10]}"
    started = time.monotonic()
    threads = [threading.Thread(target=docker, args=(h, f"i=0; while [ $i -lt {lines} ]; do "
                                                      f"logger -t searchplat-bench '{marker} {h} '$i; i=$((i+1)); done"))
               for h in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    written = time.monotonic() - started
    total = lines * len(hosts)
    deadline = time.monotonic() + 900
    found = 0
    while time.monotonic() < deadline:
        found = store.count(marker)
        if found >= total:
            break
        time.sleep(1)
    elapsed = time.monotonic() - started

    latencies = []
    for i in range(samples):
        host = hosts[i % len(hosts)]
        one = f"lat-{uuid.uuid4().hex[:12]}"
        t0 = time.monotonic()
        docker(host, f"logger -t searchplat-bench '{one}'")
        while time.monotonic() - t0 < 120:
            if store.count(one) >= 1:
                latencies.append(time.monotonic() - t0)
                break
            time.sleep(0.25)
        time.sleep(2)

    q = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else [float("nan")] * 19
    print("logging benchmark (lab: shippers -> relay over RELP/TLS -> log store)")
    print(f"{'shipping hosts':42s} {len(hosts)}")
    print(f"{'lines sent (all hosts, at once)':42s} {total}")
    print(f"{'lines written in (s)':42s} {written:.1f}")
    print(f"{'all searchable after (s)':42s} {elapsed:.1f}")
    print(f"{'lines found':42s} {found}")
    print(f"{'end-to-end events/s':42s} {found / elapsed:.0f}")
    print(f"{'write to searchable, samples':42s} {len(latencies)} of {samples}")
    print(f"{'latency p50 / p95 / max (s)':42s} {statistics.median(latencies):.2f} / {q[18]:.2f} / {max(latencies):.2f}")


if __name__ == "__main__":
    main()
