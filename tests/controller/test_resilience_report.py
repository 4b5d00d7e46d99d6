"""The figures of the resilience report, without a lab.

tests/acceptance/load.py reads hey's summary (answered, unanswered, failed,
p99, slowest) and runs the loads straight to OpenSearch (AckedWrites,
SearchLoad); tests/acceptance/resilience.py records rows and prints them as
a table (scripts/test's disruptive pass, scripts/bench resilience). They
are fed here what hey and the tests really produce, and the loads a client
that fails on purpose, so that a misread summary or a miscounted failure
cannot turn into a clean row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

ACCEPTANCE = os.path.join(os.path.dirname(__file__), "..", "acceptance")
sys.path.append(ACCEPTANCE)

import load  # noqa: E402
import resilience  # noqa: E402

# hey 0.1.4's summary (Debian's package), a run with two timeouts and one 502.
HEY_SUMMARY = """
Summary:
  Total:\t25.0123 secs
  Slowest:\t2.4811 secs
  Fastest:\t0.0041 secs
  Average:\t0.0302 secs
  Requests/sec:\t99.8300

  Total data:\t123456 bytes
  Size/request:\t247 bytes

Response time histogram:
  0.004 [1]\t|
  0.252 [495]\t|■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■

Latency distribution:
  10% in 0.0101 secs
  50% in 0.0202 secs
  90% in 0.0456 secs
  95% in 0.0612 secs
  99% in 0.4321 secs

Details (average, fastest, slowest):
  DNS+dialup:\t0.0010 secs, 0.0041 secs, 2.4811 secs

Status code distribution:
  [200]\t496 responses
  [502]\t1 responses

Error distribution:
  [2]\tGet "https://10.231.0.11:443/": context deadline exceeded (Client.Timeout exceeded while awaiting headers)
"""


class _Done:
    """What hey_result needs of a finished process."""

    def __init__(self, out):
        self.out = out

    def poll(self):
        return 0

    def communicate(self, timeout=None):
        return self.out, None


def test_hey_summary_read_with_every_kind_of_failure():
    result = load.hey_result(_Done(HEY_SUMMARY))
    assert result.codes == {200: 496, 502: 1}
    assert result.requests == 497
    assert result.unanswered == 2
    assert result.failed == 3
    assert result.p99 == pytest.approx(0.4321)
    assert result.slowest == pytest.approx(2.4811)
    assert not result.clean()
    assert resilience.load_figures(result) == {"requests": 499, "failed": 3, "p99": result.p99,
                                               "slowest": result.slowest}


def test_a_clean_hey_summary():
    clean = HEY_SUMMARY.split("Error distribution:")[0].replace("  [502]\t1 responses\n", "")
    result = load.hey_result(_Done(clean))
    assert result.clean() and result.failed == 0 and result.unanswered == 0


def test_a_summary_without_figures_is_never_clean():
    """hey killed before its summary: no codes, infinite latency."""
    result = load.hey_result(_Done("Error: something went wrong\n"))
    assert not result.clean()
    assert result.p99 == float("inf") and result.slowest == float("inf")


def test_percentile_nearest_rank():
    values = [float(i) for i in range(1, 101)]
    assert resilience.percentile(values, 0.99) == 99.0
    assert resilience.percentile(values, 0.5) == 50.0
    assert resilience.percentile([3.0], 0.99) == 3.0
    assert resilience.percentile([], 0.99) is None


def test_rows_are_appended_only_when_the_report_is_asked_for(tmp_path, monkeypatch):
    report = tmp_path / "resilience.jsonl"
    monkeypatch.delenv("SEARCHPLAT_RESILIENCE_REPORT", raising=False)
    resilience.record("not asked for", requests=1, failed=0)
    assert not report.exists()
    monkeypatch.setenv("SEARCHPLAT_RESILIENCE_REPORT", str(report))
    resilience.record("b: hung node", requests=1488, failed=0, p99=0.41, slowest=0.92, written=230, found=230,
                      recovered=24, note="balanced")
    resilience.record("a: power loss", written=500, found=500, recovered=131.4)
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert [r["scenario"] for r in rows] == ["b: hung node", "a: power loss"]
    assert rows[0]["max"] == 0.92 and rows[1]["requests"] is None


def test_the_table_prints_every_row_sorted_with_empty_cells_for_missing_figures(tmp_path):
    report = tmp_path / "resilience.jsonl"
    report.write_text(json.dumps({"scenario": "b", "requests": 10, "failed": 1, "p99": 0.123, "max": 12.5,
                                  "written": None, "found": None, "recovered": None, "note": "x"}) + "\n"
                      + json.dumps({"scenario": "a", "requests": None, "failed": None, "p99": None,
                                    "max": None, "written": 5, "found": 5, "recovered": 131.4, "note": ""}) + "\n")
    out = subprocess.run([sys.executable, os.path.join(ACCEPTANCE, "resilience.py"), str(report)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "| " + " | ".join(resilience.COLUMNS) + " |"
    assert out[2] == "| a |  |  |  |  | 5 | 5 | 131 |  |"
    assert out[3] == "| b | 10 | 1 | 0.12 | 12 |  |  |  | x |"
    assert len(out) == 4


class _FlakyClient:
    """Every third call raises, as a node going away would."""

    def __init__(self):
        self.calls = 0

    def _call(self):
        self.calls += 1
        if self.calls % 3 == 0:
            raise ConnectionError("node gone")

    def index(self, index, id, body, params):
        self._call()

    def search(self, index, body):
        self._call()


def test_acked_writes_count_only_what_was_acknowledged_and_stop_at_the_limit():
    client = _FlakyClient()
    with load.AckedWrites(client, "idx", prefix="p", pause=0, limit=9) as writes:
        deadline = time.monotonic() + 10
        while client.calls < 9 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert client.calls == 9
    assert writes.ids == ["p0", "p1", "p3", "p4", "p6", "p7"]
    assert all(isinstance(at, float) for _, at in writes.acked)


def test_search_load_counts_every_failure_and_times_every_answer():
    client = _FlakyClient()
    search = load.SearchLoad(client, "idx")
    search.pause = 0
    with search:
        deadline = time.monotonic() + 10
        while client.calls < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert search.ok + search.failed == client.calls
    assert search.failed == client.calls // 3 and search.errors[0].startswith("ConnectionError")
    assert len(search.latencies) == search.ok
    figures = search.figures()
    assert figures["requests"] == client.calls and figures["failed"] == search.failed
    assert figures["slowest"] == max(search.latencies)
