"""Prometheus metrics.

With several gunicorn workers, set PROMETHEUS_MULTIPROC_DIR (an empty,
writable directory) before the workers start: prometheus-client then keeps the
values in files there and /metrics aggregates all workers
(gunicorn_conf.py empties the directory at start and cleans up after dead
workers). Without it, the metrics are those of the one process.

Labels are bounded: `endpoint` is the route template (e.g. "/search"), or
"unmatched" for paths without a route, never the raw path.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess

HTTP_REQUESTS = Counter(
    "searchplat_http_requests_total",
    "HTTP requests served, by method, route template and status code.",
    ["method", "endpoint", "status"],
)
HTTP_LATENCY = Histogram(
    "searchplat_http_request_duration_seconds",
    "HTTP request latency in seconds, by method, route template and status code.",
    ["method", "endpoint", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SEARCHES = Counter(
    "searchplat_search_requests_total",
    "Search requests by outcome (ok, bad_request, error).",
    ["outcome"],
)
INGEST_REQUESTS = Counter(
    "searchplat_ingest_requests_total",
    "Ingest (POST /documents) requests by outcome (ok, unauthorized, bad_request, error).",
    ["outcome"],
)
INGEST_DOCUMENTS = Counter(
    "searchplat_ingest_documents_total",
    "Documents sent to OpenSearch by result (indexed, failed).",
    ["result"],
)
OPENSEARCH_ERRORS = Counter(
    "searchplat_opensearch_errors_total",
    "Failed OpenSearch calls by operation and error kind.",
    ["operation", "kind"],
)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def render() -> tuple[bytes, str]:
    """The exposition text of this process, or of all workers."""
    if multiprocess_enabled():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
