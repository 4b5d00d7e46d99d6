"""OpenSearch access: clients, the index mapping, readiness, bulk ingest.

One client (connection pool over every configured node, sniffing off) serves
ingest; a second one, with the per-try search timeout, serves searches, so
that a hung node costs a search one short try before it moves to another
node; a third one with a short timeout and no more retries than there are
nodes serves /ready so that it answers quickly when OpenSearch is blocked.
A node that failed is left out for SEARCHPLAT_OPENSEARCH_DEAD_TIMEOUT
seconds, doubled for each further failure in a row up to four times that
(opensearch-py's default grows to 32 times 60 s: after a few errors, a
worker would search a single node for half an hour), and the nodes take
turns across every thread of the process (SharedRoundRobinSelector). TLS is
always verified (against SEARCHPLAT_OPENSEARCH_CA when set, else the certifi
bundle).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.connection_pool import ConnectionSelector
from opensearchpy.exceptions import (
    AuthenticationException,
    AuthorizationException,
    ConnectionError as OSConnectionError,
    ConnectionTimeout,
    NotFoundError,
    OpenSearchException,
    RequestError,
    SSLError,
    TransportError,
)

from .config import Settings
from .metrics import OPENSEARCH_ERRORS

log = logging.getLogger("searchplat_app.backend")

# Mapping of the application's index. The composable index template
# "searchplat-app" of roles/opensearch (pattern "search-*") supplies the
# settings (shards, replicas) and no mappings, so the service creates the index
# with these mappings only and leaves the settings to the template.
# Text fields use the built-in "standard" analyzer: the language analyzers
# (english, stemming filters) live in the analysis-common module, which the
# lab's minimal OpenSearch distribution does not ship.
INDEX_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "title": {
            "type": "text",
            "fields": {"raw": {"type": "keyword", "ignore_above": 256}},
        },
        "body": {"type": "text"},
        "tags": {"type": "keyword"},
        "url": {"type": "keyword", "index": False},
    },
}
SEARCH_FIELDS = ["title^2", "body"]


# Failure labels, most specific class first (ConnectionTimeout and SSLError
# are ConnectionErrors; every one of them is a TransportError).
_ERROR_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (ConnectionTimeout, "timeout"),
    (SSLError, "tls"),
    (OSConnectionError, "connection"),
    (AuthenticationException, "authentication"),
    (AuthorizationException, "authorization"),
    (NotFoundError, "not_found"),
    (RequestError, "bad_request"),
)


def error_kind(exc: BaseException) -> str:
    """A short, bounded label for an OpenSearch failure (metrics, logs)."""
    for cls, kind in _ERROR_KINDS:
        if isinstance(exc, cls):
            return kind
    if isinstance(exc, TransportError):
        return f"http_{exc.status_code}" if isinstance(exc.status_code, int) else "transport"
    return "other"


def record_error(operation: str, exc: BaseException) -> str:
    kind = error_kind(exc)
    OPENSEARCH_ERRORS.labels(operation=operation, kind=kind).inc()
    log.warning(
        "opensearch call failed",
        extra={"fields": {"operation": operation, "error_kind": kind,
                          "error_type": type(exc).__name__}},
    )
    return kind


# Consecutive failures after which a dead node's time out stops doubling:
# dead_timeout x 2**2 at most.
DEAD_TIMEOUT_DOUBLINGS = 2


class SharedRoundRobinSelector(ConnectionSelector):
    """Round robin over the live nodes shared by every thread of the process.
    opensearch-py's RoundRobinSelector keeps its position per thread: each
    thread of the server's pool starts at the first node, so a worker's
    requests pile onto one node, and a node that comes back gets no request
    until the threads' positions happen to reach it."""

    def __init__(self, opts: Any) -> None:
        super().__init__(opts)
        self._next = itertools.count()

    def select(self, connections: Any) -> Any:
        return connections[next(self._next) % len(connections)]


def build_client(settings: Settings, *, timeout: float | None = None,
                 max_retries: int | None = None) -> OpenSearch:
    kwargs: dict[str, Any] = {
        "selector_class": SharedRoundRobinSelector,
        "dead_timeout": settings.opensearch_dead_timeout,
        "timeout_cutoff": DEAD_TIMEOUT_DOUBLINGS,
        "hosts": [h.as_client_dict() for h in settings.opensearch_hosts],
        "timeout": settings.opensearch_timeout if timeout is None else timeout,
        "max_retries": settings.opensearch_max_retries if max_retries is None else max_retries,
        "retry_on_timeout": settings.opensearch_retry_on_timeout,
        "sniff_on_start": False,
        "sniff_on_connection_fail": False,
        "sniffer_timeout": None,
        "pool_maxsize": settings.opensearch_pool_maxsize,
        "http_compress": False,
    }
    if settings.opensearch_user:
        kwargs["http_auth"] = (settings.opensearch_user, settings.opensearch_password)
    if settings.use_tls:
        # Certificate chain and host name (urllib3's default) both verified.
        kwargs.update(use_ssl=True, verify_certs=True, ssl_show_warn=True)
        if settings.opensearch_ca:
            kwargs["ca_certs"] = settings.opensearch_ca
    return OpenSearch(**kwargs)


@dataclass
class Readiness:
    ready: bool
    reason: str
    details: dict[str, Any]


class Backend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.index = settings.index
        self.client = build_client(settings)
        self.search_client = (self.client if settings.opensearch_search_timeout is None
                              else build_client(settings, timeout=settings.opensearch_search_timeout))
        # /ready: each node tried at most once, each try bounded by ready_timeout.
        self.ready_client = build_client(
            settings,
            timeout=settings.ready_timeout,
            max_retries=len(settings.opensearch_hosts) - 1,
        )
        self._index_known = False

    def close(self) -> None:
        for client in {id(c): c for c in (self.client, self.search_client, self.ready_client)}.values():
            try:
                client.close()
            except Exception:  # pragma: no cover - best effort at shutdown
                pass

    # -- index ------------------------------------------------------------

    def ensure_index(self, client: OpenSearch | None = None) -> bool:
        """Create the index with its mappings when missing; True if it was created."""
        if self._index_known:
            return False
        client = client or self.client
        if client.indices.exists(index=self.index):
            self._index_known = True
            return False
        try:
            client.indices.create(index=self.index, body={"mappings": INDEX_MAPPINGS})
        except RequestError as exc:
            # Another worker or app server created it in the meantime.
            if exc.error != "resource_already_exists_exception":
                raise
            self._index_known = True
            return False
        self._index_known = True
        log.info("index created", extra={"fields": {"index": self.index}})
        return True

    # -- readiness ----------------------------------------------------------

    def readiness(self) -> Readiness:
        """Reachable, authenticated, index present (or created) and searchable.

        The health asked for is that of the application's index
        (GET _cluster/health/<index>): red when one of its primaries is
        unassigned or when the cluster has no elected cluster manager. A red
        index of some other application does not take search offline. When
        the OpenSearch user may not read cluster health (cluster:monitor/health
        is not in the least-privilege app role), the search probe below
        decides alone: it fails when any primary shard of the index is missing.
        """
        client = self.ready_client
        timeout = f"{max(int(self.settings.ready_timeout * 1000), 100)}ms"
        details: dict[str, Any] = {"index": self.index}
        step = "index"
        try:
            self._index_known = False
            details["index_created"] = self.ensure_index(client)
            step = "health"
            try:
                # No wait_for_* parameter: answers at once. (A "timeout"
                # parameter would be taken by the client as its own timeout.)
                health = client.cluster.health(index=self.index)
                details["index_status"] = health.get("status")
                if health.get("status") == "red":
                    return Readiness(False, "index health is red", details)
            except AuthorizationException:
                details["index_status"] = "unknown (not permitted)"
            except TransportError as exc:
                # 408: the health call timed out waiting; the body says red.
                if exc.status_code == 408:
                    details["index_status"] = "red"
                    return Readiness(False, "index health is red", details)
                raise
            step = "probe"
            probe = client.search(
                index=self.index,
                body={"size": 0, "track_total_hits": False, "timeout": timeout},
                params={"allow_partial_search_results": "false"},
            )
            shards = probe.get("_shards", {})
            if shards.get("failed", 0) or probe.get("timed_out"):
                return Readiness(False, "search probe incomplete", details)
        except OpenSearchException as exc:
            kind = record_error(f"ready_{step}", exc)
            details["error"] = kind
            reasons = {
                "connection": "opensearch unreachable",
                "timeout": "opensearch timed out",
                "tls": "TLS verification of opensearch failed (check SEARCHPLAT_OPENSEARCH_CA)",
                "authentication": "opensearch rejected the credentials",
                "authorization": "opensearch denied access to the index",
            }
            fallback = ("index not searchable (primary shards unavailable)" if step == "probe"
                        else f"opensearch error during {step}")
            return Readiness(False, reasons.get(kind, fallback), details)
        return Readiness(True, "ok", details)

    # -- search ---------------------------------------------------------------

    def search(self, query: str, page: int, size: int) -> dict[str, Any]:
        body = {
            "from": (page - 1) * size,
            "size": size,
            "track_total_hits": True,
            "_source": ["title", "url", "tags"],
            "query": {
                "multi_match": {
                    "query": query,
                    "fields": SEARCH_FIELDS,
                    "type": "best_fields",
                    "lenient": True,
                }
            },
            "highlight": {
                "encoder": "html",
                "pre_tags": ["<mark>"],
                "post_tags": ["</mark>"],
                "fields": {
                    "body": {"fragment_size": 180, "number_of_fragments": 1,
                             "no_match_size": 180},
                    "title": {"number_of_fragments": 0},
                },
            },
        }
        return self.search_client.search(index=self.index, body=body)

    # -- ingest ---------------------------------------------------------------

    def bulk_index(self, documents: list[dict[str, Any]], *,
                   refresh: bool = False) -> dict[str, Any]:
        """Index documents (id optional: same id = overwrite); count results."""
        self.ensure_index()
        lines: list[dict[str, Any]] = []
        for doc in documents:
            action: dict[str, Any] = {"_index": self.index}
            if doc.get("id"):
                action["_id"] = doc["id"]
            lines.append({"index": action})
            lines.append({k: v for k, v in doc.items() if k != "id" and v is not None})
        params = {"refresh": "wait_for"} if refresh else {}
        started = time.perf_counter()
        response = self.client.bulk(body=lines, params=params)
        indexed, failures = 0, []
        for position, item in enumerate(response.get("items", [])):
            result = item.get("index", {})
            if 200 <= int(result.get("status", 500)) < 300:
                indexed += 1
            else:
                error = result.get("error")
                if not isinstance(error, dict):
                    error = {"type": str(error or "unknown")}
                failures.append({
                    "position": position,
                    "id": result.get("_id"),
                    "status": result.get("status"),
                    "error": error.get("type", "unknown"),
                    "reason": str(error.get("reason", ""))[:300],
                })
        return {
            "indexed": indexed,
            "failed": len(failures),
            "errors": failures[:20],
            "took_ms": int((time.perf_counter() - started) * 1000),
        }
