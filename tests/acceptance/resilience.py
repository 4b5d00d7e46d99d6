"""The resilience report: one row per fault or operation that the
disruptive tests put the lab through, with what was measured under load.

A disruptive test that measures a fault calls ``record(scenario, ...)`` as
soon as it has its figures, before its assertions, so that a failing run
still reports what it saw. With SEARCHPLAT_RESILIENCE_REPORT set to a file
(scripts/test's disruptive pass sets it under artifacts/, and so does
``scripts/bench resilience``), each row is appended to it as one JSON line
(one write per row, so the pass's workers never interleave). Without it,
nothing is written. ``python3 tests/acceptance/resilience.py FILE`` prints
the table.

Columns (empty where a scenario has no such figure):
  requests   searches sent during the fault (through the load balancers, or
             straight to OpenSearch where the fault is the cluster's)
  failed     those not answered 200 (an error, a timeout, a 5xx)
  p99, max   seconds, of the answered ones
  written    documents OpenSearch acknowledged during the fault
  found      of those, found afterwards
  recovered  seconds from the end of the fault (or the start of the
             operation) until the platform was whole again; what "whole"
             means is in the row's note
"""

from __future__ import annotations

import json
import os
import sys

COLUMNS = ("scenario", "requests", "failed", "p99", "max", "written", "found", "recovered", "note")


def record(scenario: str, requests: int | None = None, failed: int | None = None, p99: float | None = None,
           slowest: float | None = None, written: int | None = None, found: int | None = None,
           recovered: float | None = None, note: str = "") -> dict:
    """Append one row to the report (when SEARCHPLAT_RESILIENCE_REPORT is set); returns it."""
    row = {"scenario": scenario, "requests": requests, "failed": failed, "p99": p99, "max": slowest,
           "written": written, "found": found, "recovered": recovered, "note": note}
    path = os.environ.get("SEARCHPLAT_RESILIENCE_REPORT")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(row) + "\n").encode())
        finally:
            os.close(fd)
    return row


def load_figures(result) -> dict:
    """record()'s request columns from a load.LoadResult (hey)."""
    return {"requests": result.requests + result.unanswered, "failed": result.failed,
            "p99": result.p99, "slowest": result.slowest}


def percentile(values: list[float], share: float) -> float | None:
    """The value at `share` (0.99) of the sorted values (nearest rank)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def read(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "inf" if value == float("inf") else f"{value:.2f}" if value < 10 else f"{value:.0f}"
    return str(value)


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table, in scenario order."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for row in sorted(rows, key=lambda r: r["scenario"]):
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: resilience.py REPORT.jsonl")
    print(table(read(sys.argv[1])))
