"""The service as it runs in production: gunicorn with several uvicorn
workers and prometheus multiprocess metrics; the seed command; a bad
environment stopping the start with a clear message."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from test_api import metric_value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env() -> dict[str, str]:
    """The current environment without any SEARCHPLAT_* / PROMETHEUS_* variable."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("SEARCHPLAT_", "PROMETHEUS_"))}


@pytest.fixture(scope="module")
def gunicorn(opensearch_env: dict[str, str], tmp_path_factory) -> Iterator[tuple[str, Path, Path]]:
    port = free_port()
    multiproc = tmp_path_factory.mktemp("prom")
    (multiproc / "stale.db").write_bytes(b"left over from an earlier run")
    log_path = tmp_path_factory.mktemp("gunicorn") / "out.log"
    env = {**base_env(), **opensearch_env, "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
           "SEARCHPLAT_BIND": f"127.0.0.1:{port}", "SEARCHPLAT_WORKERS": "2"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:searchplat_app.gunicorn_conf",
             "searchplat_app.main:app"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("gunicorn did not start:\n" + log_path.read_text())
            time.sleep(0.2)
        yield base, log_path, multiproc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_gunicorn_workers_share_metrics(gunicorn: tuple[str, Path, Path]) -> None:
    base, log_path, multiproc = gunicorn
    n = 12
    for i in range(n):
        # A new connection each time, so that both workers can get requests.
        response = httpx.get(base + "/live", headers={"Connection": "close",
                                                      "X-Request-ID": f"gu-{i}"})
        assert response.status_code == 200 and response.headers["x-request-id"] == f"gu-{i}"
    response = httpx.get(base + "/search", params={"q": "gunicorn workers"})
    assert response.status_code == 200
    text = httpx.get(base + "/metrics").text
    # Counted once per request whichever worker served it, and the stale file
    # of an earlier run was removed at start.
    assert metric_value(text, "searchplat_http_requests_total", endpoint="/live") == n
    assert metric_value(text, "searchplat_http_requests_total", endpoint="/search",
                        status="200") == 1
    assert not (multiproc / "stale.db").exists()
    assert list(multiproc.glob("counter_*.db"))


def test_gunicorn_logs_are_json_lines(gunicorn: tuple[str, Path, Path]) -> None:
    base, log_path, _ = gunicorn
    assert httpx.get(base + "/search", params={"q": "logs"},
                     headers={"X-Request-ID": "gu-log-1"}).status_code == 200
    time.sleep(0.2)
    entries = [json.loads(line) for line in log_path.read_text().splitlines()
               if line.startswith("{")]
    line = next(e for e in entries if e.get("request_id") == "gu-log-1"
                and e["message"] == "request")
    assert {"time", "level", "message", "request_id", "method", "path", "status",
            "duration_ms"} <= set(line)
    assert line["path"] == "/search" and line["status"] == 200
    # Successful probes (/live above) are logged at DEBUG, so not at INFO.
    assert not any(e.get("path") == "/live" for e in entries)
    # Every line, gunicorn's and uvicorn's included, is one JSON object.
    lines = log_path.read_text().splitlines()
    assert lines and all(line.startswith("{") for line in lines), lines[:5]
    assert any(e.get("logger") == "gunicorn.error" for e in entries)


def test_bad_environment_stops_start_with_clear_message() -> None:
    env = {**base_env(), "SEARCHPLAT_OPENSEARCH_HOSTS": "not-a-url",
           "SEARCHPLAT_OPENSEARCH_PASSWORD": "hunter2-secret"}
    result = subprocess.run([sys.executable, "-c", "import searchplat_app.main"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "invalid configuration" in output
    assert "SEARCHPLAT_OPENSEARCH_HOSTS" in output and "SEARCHPLAT_INGEST_TOKEN" in output
    assert "must be set together" in output
    assert "hunter2-secret" not in output
    assert "Traceback" not in output


def test_seed_command_is_idempotent(opensearch_env: dict[str, str], os_client,
                                    tmp_path) -> None:
    index = opensearch_env["SEARCHPLAT_INDEX"] + "-seed"
    env = {**base_env(), **opensearch_env, "SEARCHPLAT_INDEX": index}
    env.pop("SEARCHPLAT_INGEST_TOKEN")  # not needed by the seed command
    try:
        for _ in range(2):
            result = subprocess.run([sys.executable, "-m", "searchplat_app.seed"], env=env,
                                    capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, result.stderr
            summary = json.loads(result.stdout.strip().splitlines()[-1])
            assert summary["failed"] == 0 and summary["indexed"] == summary["documents"] >= 50
        assert os_client.count(index=index)["count"] == summary["documents"]
    finally:
        try:
            os_client.indices.delete(index=index, params={"ignore_unavailable": "true"})
        except Exception:  # noqa: BLE001 - least-privilege users may not delete
            pass
