"""Bounded load from the controller, for the tests that break something.

Searches through the load balancers (hey): hey runs for a fixed time at a
fixed rate per worker, so a test sends at most seconds x workers x rate
requests; its summary gives the status codes, the transport errors and the
slowest request.

Searches straight to OpenSearch (SearchLoad): one client in a loop, over
every node it knows (it fails over), each answered search timed.

Writes straight to OpenSearch (AckedWrites): one document at a time on a
thread of its own, each id recorded with its time once OpenSearch has
acknowledged it, so that a test can ask afterwards whether every
acknowledged write is still there.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass

from resilience import percentile


@dataclass
class LoadResult:
    codes: dict[int, int]   # status code -> responses
    errors: str             # hey's error distribution (timeouts, resets), empty if none
    slowest: float          # seconds, the slowest request
    output: str             # hey's whole summary
    p99: float = float("inf")  # seconds, 99th percentile of the answered requests

    @property
    def requests(self) -> int:
        """Requests answered (any status)."""
        return sum(self.codes.values())

    @property
    def unanswered(self) -> int:
        """Requests that got no answer (hey's error distribution: timeouts, resets)."""
        return sum(int(n) for n in re.findall(r"^\s*\[(\d+)\]", self.errors, re.M))

    @property
    def failed(self) -> int:
        """Requests not answered 200."""
        return self.requests - self.codes.get(200, 0) + self.unanswered

    def clean(self) -> bool:
        """Every request answered, and answered 200."""
        return bool(self.codes) and set(self.codes) == {200} and not self.errors


def start_hey(lb: dict, seconds: int, path: str = "/", workers: int = 5, rate_per_worker: int = 20,
              timeout: int = 10) -> subprocess.Popen:
    """hey against one load balancer's address, its public name as Host and SNI."""
    exe = shutil.which("hey")
    assert exe, "hey is not installed on the controller (scripts/lib/bootstrap.sh installs it: apt-get install hey)"
    return subprocess.Popen(
        [exe, "-z", f"{seconds}s", "-c", str(workers), "-q", str(rate_per_worker), "-t", str(timeout),
         "-host", lb["server_name"], f"https://{lb['address']}:{lb['port']}{path}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def hey_result(proc: subprocess.Popen, stop: bool = False) -> LoadResult:
    """The load's result; stop=True ends it now (SIGINT: hey prints its summary)."""
    if stop and proc.poll() is None:
        proc.send_signal(2)
    out = proc.communicate(timeout=120)[0]
    codes = {int(code): int(n) for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
    errors = re.search(r"Error distribution:(.*)", out, re.S)
    slowest = re.search(r"Slowest:\s+([\d.]+) secs", out)
    p99 = re.search(r"99%+ in ([\d.]+) secs", out)
    return LoadResult(codes, errors.group(1).strip() if errors else "",
                      float(slowest.group(1)) if slowest else float("inf"), out,
                      float(p99.group(1)) if p99 else float("inf"))


class AckedWrites:
    """Writes into `index` until stopped (or `limit` documents tried), `pause`
    seconds apart, with ids `prefix`0, `prefix`1, ...: `acked` holds
    (id, time) of each write OpenSearch acknowledged. A write that raised
    is not counted: it may be missing afterwards, an acknowledged one may
    not. Used as a context manager (stops on exit) or with start()/stop()."""

    def __init__(self, client, index: str, prefix: str = "w", pause: float = 0.1, limit: int | None = None,
                 body=lambda i: {"n": i}, params: dict | None = None):
        self.client, self.index, self.prefix, self.pause, self.limit = client, index, prefix, pause, limit
        self.body, self.params = body, params or {}
        self.acked: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        i = 0
        while not self._stop.is_set() and (self.limit is None or i < self.limit):
            doc_id = f"{self.prefix}{i}"
            try:
                self.client.index(index=self.index, id=doc_id, body=self.body(i), params=self.params)
                self.acked.append((doc_id, time.time()))
            except Exception:  # not acknowledged: may be missing, never counted
                pass
            i += 1
            if self.pause:
                time.sleep(self.pause)

    @property
    def ids(self) -> list[str]:
        """The acknowledged ids so far."""
        return [doc_id for doc_id, _ in list(self.acked)]

    def start(self) -> "AckedWrites":
        self._thread.start()
        return self

    def stop(self, timeout: float = 60) -> "AckedWrites":
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return self

    def __enter__(self) -> "AckedWrites":
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class SearchLoad:
    """Searches against every node (the client fails over) until stopped;
    the seconds each answered search took in `latencies`."""

    def __init__(self, client, index):
        self.client, self.index = client, index
        self.ok = self.failed = 0
        self.errors: list[str] = []
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.client.search(index=self.index, body={"query": {"match": {"title": "doc"}}})
                self.latencies.append(time.monotonic() - started)
                self.ok += 1
            except Exception as exc:  # every failure counts
                self.failed += 1
                self.errors.append(repr(exc)[:200])
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)

    def figures(self) -> dict:
        """record()'s request columns."""
        return {"requests": self.ok + self.failed, "failed": self.failed,
                "p99": percentile(self.latencies, 0.99), "slowest": max(self.latencies, default=None)}
