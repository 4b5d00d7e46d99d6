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


class _Loop:
    """A loop on a thread of its own until stopped: `_step(i)` for i = 0, 1,
    ... (a step that returns False ends it), `pause` seconds apart. Used as
    a context manager (stops on exit) or with start()/stop()."""

    pause = 0.0
    stop_timeout = 60.0  # seconds stop() waits for the step under way

    def __init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _step(self, i: int) -> bool:
        raise NotImplementedError

    def _run(self):
        i = 0
        while not self._stop.is_set() and self._step(i) is not False:
            i += 1
            if self.pause:
                time.sleep(self.pause)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.stop_timeout)
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class AckedWrites(_Loop):
    """Writes into `index` until stopped (or `limit` documents tried), `pause`
    seconds apart, with ids `prefix`0, `prefix`1, ...: `acked` holds
    (id, time) of each write OpenSearch acknowledged. A write that raised
    is not counted: it may be missing afterwards, an acknowledged one may
    not."""

    def __init__(self, client, index: str, prefix: str = "w", pause: float = 0.1, limit: int | None = None,
                 body=lambda i: {"n": i}, params: dict | None = None):
        super().__init__()
        self.client, self.index, self.prefix, self.pause, self.limit = client, index, prefix, pause, limit
        self.body, self.params = body, params or {}
        self.acked: list[tuple[str, float]] = []

    def _step(self, i: int) -> bool:
        if self.limit is not None and i >= self.limit:
            return False
        doc_id = f"{self.prefix}{i}"
        try:
            self.client.index(index=self.index, id=doc_id, body=self.body(i), params=self.params)
            self.acked.append((doc_id, time.time()))
        except Exception:  # not acknowledged: may be missing, never counted
            pass
        return True

    @property
    def ids(self) -> list[str]:
        """The acknowledged ids so far."""
        return [doc_id for doc_id, _ in list(self.acked)]


class SearchLoad(_Loop):
    """Searches against every node (the client fails over) until stopped,
    0.05 s apart; the seconds each answered search took in `latencies`."""

    pause = 0.05
    stop_timeout = 30.0

    def __init__(self, client, index):
        super().__init__()
        self.client, self.index = client, index
        self.ok = self.failed = 0
        self.errors: list[str] = []
        self.latencies: list[float] = []

    def _step(self, i: int) -> bool:
        started = time.monotonic()
        try:
            self.client.search(index=self.index, body={"query": {"match": {"title": "doc"}}})
            self.latencies.append(time.monotonic() - started)
            self.ok += 1
        except Exception as exc:  # every failure counts
            self.failed += 1
            self.errors.append(repr(exc)[:200])
        return True

    def figures(self) -> dict:
        """record()'s request columns."""
        return {"requests": self.ok + self.failed, "failed": self.failed,
                "p99": percentile(self.latencies, 0.99), "slowest": max(self.latencies, default=None)}
