"""Bounded load through the load balancers, from the controller (hey).

hey runs for a fixed time at a fixed rate per worker, so a test sends at
most seconds x workers x rate requests; its summary gives the status codes,
the transport errors and the slowest request.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass


@dataclass
class LoadResult:
    codes: dict[int, int]   # status code -> responses
    errors: str             # hey's error distribution (timeouts, resets), empty if none
    slowest: float          # seconds, the slowest request
    output: str             # hey's whole summary

    @property
    def requests(self) -> int:
        return sum(self.codes.values())

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
         "-host", lb["server_name"], f"https://{lb['address']}{path}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def hey_result(proc: subprocess.Popen, stop: bool = False) -> LoadResult:
    """The load's result; stop=True ends it now (SIGINT: hey prints its summary)."""
    if stop and proc.poll() is None:
        proc.send_signal(2)
    out = proc.communicate(timeout=120)[0]
    codes = {int(code): int(n) for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
    errors = re.search(r"Error distribution:(.*)", out, re.S)
    slowest = re.search(r"Slowest:\s+([\d.]+) secs", out)
    return LoadResult(codes, errors.group(1).strip() if errors else "",
                      float(slowest.group(1)) if slowest else float("inf"), out)
