"""The service against a real OpenSearch node (see conftest.py)."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import time

import certifi
import pytest
from fastapi.testclient import TestClient
from opensearchpy import OpenSearch

from conftest import TEST_MAX_BYTES, TEST_MAX_DOCUMENTS, TEST_TOKEN, auth
from searchplat_app.config import Settings
from searchplat_app.logs import JsonFormatter


def assert_json_error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("error"), str) and body.get("message")
    assert "Traceback" not in response.text
    return body


def test_opensearch_test_node_is_configured() -> None:
    """Fails (rather than every test erroring only) when no node is given."""
    assert os.environ.get("SEARCHPLAT_TEST_OPENSEARCH_HOSTS"), (
        "SEARCHPLAT_TEST_OPENSEARCH_HOSTS is not set: the OpenSearch-backed tests need a "
        "real node, e.g. SEARCHPLAT_TEST_OPENSEARCH_HOSTS=http://127.0.0.1:9200")


# -- search -------------------------------------------------------------------

def test_search_returns_seeded_documents_with_highlights(client: TestClient, seeded) -> None:
    response = client.get("/search", params={"q": "shard replica", "size": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query"] == "shard replica" and body["page"] == 1 and body["size"] == 5
    assert body["total"] >= 3 and isinstance(body["took_ms"], int)
    assert 1 <= len(body["results"]) <= 5
    seed_ids = {d["id"] for d in seeded}
    for result in body["results"]:
        assert set(result) >= {"id", "title", "snippet", "score"}
        assert result["id"] in seed_ids and result["title"]
        assert isinstance(result["score"], float)
    assert any("<mark>" in r["snippet"] for r in body["results"])
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)


def test_search_title_boost_and_title_highlight(client: TestClient, seeded) -> None:
    body = client.get("/search", params={"q": "Keepalived"}).json()
    top = body["results"][0]
    assert top["id"] == "seed-031"
    assert top["title_highlight"] == "<mark>Keepalived</mark> and virtual IPs"


def test_search_pagination(client: TestClient, seeded) -> None:
    first = client.get("/search", params={"q": "opensearch", "size": 3, "page": 1}).json()
    second = client.get("/search", params={"q": "opensearch", "size": 3, "page": 2}).json()
    assert first["total"] == second["total"] > 6
    ids1 = [r["id"] for r in first["results"]]
    ids2 = [r["id"] for r in second["results"]]
    assert len(ids1) == len(ids2) == 3 and not set(ids1) & set(ids2)
    last_page = -(-first["total"] // 3)
    tail = client.get("/search", params={"q": "opensearch", "size": 3, "page": last_page}).json()
    assert 1 <= len(tail["results"]) <= 3
    beyond = client.get("/search", params={"q": "opensearch", "size": 3,
                                           "page": last_page + 1}).json()
    assert beyond["results"] == [] and beyond["total"] == first["total"]


@pytest.mark.parametrize("params", [
    {"q": "x" * 200}, {"q": "x", "size": 50}, {"q": "x", "size": 1},
    {"q": "x", "page": 200, "size": 50}, {"q": "x", "page": 10000, "size": 1},
    {"q": '"unbalanced AND (quote OR* ~ title:x'},
])
def test_search_accepts_bounds(client: TestClient, seeded, params) -> None:
    assert client.get("/search", params=params).status_code == 200


@pytest.mark.parametrize("query_string", [
    "", "q=", "q=%20%20", "q=" + "x" * 201, "q=a%00b", "q=a%1Bb", "q=a%0Ab", "q=a%7Fb",
    "q=x&size=0", "q=x&size=51", "q=x&size=abc", "q=x&size=-1", "q=x&size=1.5",
    "q=x&page=0", "q=x&page=-3", "q=x&page=abc", "q=x&page=99999999999999999999",
    "q=x&page=201&size=50", "q=x&page=10001&size=1",
])
def test_search_bad_input_is_json_400(client: TestClient, query_string: str) -> None:
    response = client.get("/search?" + query_string)
    assert_json_error(response, 400)


def test_search_html_is_escaped_in_highlights(client: TestClient, seeded) -> None:
    doc = {"id": "xss-1", "title": "<script>alert(1)</script> zanzibarword",
           "body": "zanzibarword <img src=x onerror=alert(1)> & more"}
    assert client.post("/documents?refresh=true", json=[doc], headers=auth()).status_code == 200
    result = client.get("/search", params={"q": "zanzibarword"}).json()["results"][0]
    assert result["id"] == "xss-1"
    assert "<script" not in result["title_highlight"] and "<img" not in result["snippet"]
    assert "&lt;img" in result["snippet"] and "<mark>zanzibarword</mark>" in result["snippet"]
    assert result["title"] == doc["title"]  # the plain field, as stored


# -- ingest ---------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": "Bearer "},
    {"Authorization": f"Basic {TEST_TOKEN}"}, {"Authorization": TEST_TOKEN},
    {"Authorization": f"Bearer {TEST_TOKEN}x"},
])
def test_ingest_requires_the_token(client: TestClient, headers) -> None:
    response = client.post("/documents", json=[{"title": "t"}], headers=headers)
    assert_json_error(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_ingest_indexes_and_is_idempotent(client: TestClient, os_client: OpenSearch,
                                          settings: Settings, seeded) -> None:
    docs = [{"id": f"ingest-{i}", "title": f"Ingested quokkadoc {i}", "body": "body",
             "tags": ["test"], "url": f"/docs/{i}"} for i in range(3)]
    for _ in range(2):
        response = client.post("/documents?refresh=true", json=docs, headers=auth())
        assert response.status_code == 200, response.text
        assert response.json()["indexed"] == 3 and response.json()["failed"] == 0
    count = os_client.count(index=settings.index,
                            body={"query": {"ids": {"values": [d["id"] for d in docs]}}})["count"]
    assert count == 3
    body = client.get("/search", params={"q": "quokkadoc"}).json()
    assert body["total"] == 3
    assert {r["url"] for r in body["results"]} == {"/docs/0", "/docs/1", "/docs/2"}


def test_ingest_without_id_generates_one(client: TestClient) -> None:
    response = client.post("/documents", json=[{"title": "anonymous doc"}], headers=auth())
    assert response.status_code == 200 and response.json()["indexed"] == 1


@pytest.mark.parametrize("content, content_type, status", [
    (b"not json", "application/json", 400),
    (b'{"title": "an object, not a list"}', "application/json", 400),
    (b"[]", "application/json", 400),
    (b'[{"body": "no title"}]', "application/json", 400),
    (b'[{"title": "t", "unknown": 1}]', "application/json", 400),
    (b'[{"title": "t", "id": "spaces are bad"}]', "application/json", 400),
    (b'[{"title": 5}]', "application/json", 400),
    (b'[{"title": "t"}]', "text/plain", 415),
    (b'[{"title": "t"}]', "", 415),
    (b"\xff\xfe", "application/json", 400),
    (b"[" * 100000, "application/json", 413),
    (json.dumps([{"title": "t"}] * (TEST_MAX_DOCUMENTS + 1)).encode(), "application/json", 413),
    (json.dumps([{"title": "t", "body": "x" * (TEST_MAX_BYTES + 10)}]).encode(),
     "application/json", 413),
])
def test_ingest_bad_input_is_json_4xx(client: TestClient, content: bytes, content_type: str,
                                      status: int) -> None:
    headers = {**auth(), "Content-Type": content_type}
    body = assert_json_error(client.post("/documents", content=content, headers=headers), status)
    if status == 400 and b"title" in content and content.startswith(b"[{"):
        assert body["details"] and "position" in body["details"][0]


def test_ingest_chunked_body_over_the_limit(client: TestClient) -> None:
    """No Content-Length (chunked): the limit holds while the body is read."""
    chunks = iter([b"[" + b" " * (TEST_MAX_BYTES // 2)] * 3)
    response = client.post("/documents", content=chunks,
                           headers={**auth(), "Content-Type": "application/json"})
    assert assert_json_error(response, 413)["error"] == "payload_too_large"


def test_ingest_bad_refresh_value(client: TestClient) -> None:
    assert_json_error(client.post("/documents?refresh=maybe", json=[{"title": "t"}],
                                  headers=auth()), 400)


# -- health, readiness, errors ----------------------------------------------------

def test_health_and_live(client: TestClient) -> None:
    for path in ("/health", "/live"):
        response = client.get(path)
        assert response.status_code == 200 and response.json()["status"] == "ok"
        assert client.head(path).status_code == 200
    assert client.get("/health").json()["instance"] == socket.gethostname()
    assert client.get("/live").json() == {"status": "ok"}


def test_ready_when_opensearch_is_up(client: TestClient, settings: Settings) -> None:
    response = client.get("/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready" and body["index"] == settings.index
    assert client.head("/ready").status_code == 200
    assert body["index_status"] in ("green", "yellow", "unknown (not permitted)")


def test_missing_index_is_created(os_client: OpenSearch, settings: Settings) -> None:
    from dataclasses import replace

    from searchplat_app.application import create_app

    ready_index = f"{settings.index}-ready"
    search_index = f"{settings.index}-search"
    try:
        # No `with`: the startup hook (which also creates the index) does not run.
        ready_client = TestClient(create_app(replace(settings, index=ready_index)))
        body = ready_client.get("/ready").json()
        assert body["status"] == "ready" and body["index_created"] is True
        assert ready_client.get("/ready").json()["index_created"] is False
        # GET <index> (indices:admin/get) is allowed to the app user; _mapping is not.
        mappings = os_client.indices.get(index=ready_index)[ready_index]["mappings"]
        assert mappings["dynamic"] == "strict"
        assert set(mappings["properties"]) == {"title", "body", "tags", "url"}
        # Searching before the index exists: an empty result (index created), not an error.
        search_client = TestClient(create_app(replace(settings, index=search_index)))
        response = search_client.get("/search", params={"q": "anything"})
        assert response.status_code == 200 and response.json()["total"] == 0
        assert os_client.indices.exists(index=search_index)
    finally:
        for index in (ready_index, search_index):
            try:
                os_client.indices.delete(index=index, params={"ignore_unavailable": "true"})
            except Exception:  # noqa: BLE001 - least-privilege users may not delete
                pass


def test_ready_503_when_the_index_is_red(admin_os_client: OpenSearch, settings: Settings) -> None:
    """An index whose primary cannot be allocated: the service (as the app
    user) answers /ready 503 within its timeout. The red index is created and
    removed by the admin client: a least-privilege app user may not delete
    indices, and one left behind would turn the cluster's health red."""
    from dataclasses import replace

    from searchplat_app.application import create_app

    red_index = f"{settings.index}-red"
    # Primary shard pinned to a node that does not exist: the index is red.
    admin_os_client.indices.create(
        index=red_index,
        body={"settings": {"index.routing.allocation.require._name": "no-such-node"}},
        params={"wait_for_active_shards": "0"},
    )
    try:
        started = time.monotonic()
        response = TestClient(create_app(replace(settings, index=red_index))).get("/ready")
        assert time.monotonic() - started < 10
        assert response.status_code == 503, response.text
        assert response.json()["reason"] in (
            "index health is red", "index not searchable (primary shards unavailable)")
    finally:
        admin_os_client.indices.delete(index=red_index)
    assert not admin_os_client.indices.exists(index=red_index)


def test_ready_503_when_opensearch_unreachable(broken_client: TestClient) -> None:
    started = time.monotonic()
    response = broken_client.get("/ready")
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready" and body["reason"] == "opensearch unreachable"
    # Liveness does not depend on OpenSearch.
    assert broken_client.get("/health").status_code == 200


@pytest.mark.parametrize("change, reason", [
    ({"opensearch_password": "wrong-password-1"}, "opensearch rejected the credentials"),
    ({"opensearch_ca": certifi.where()}, "TLS verification of opensearch failed"),
])
def test_ready_503_with_wrong_credentials_or_ca(settings: Settings, change, reason) -> None:
    """Only for a secured test node (basic auth; https with a private CA)."""
    if "opensearch_password" in change and not settings.opensearch_user:
        pytest.skip("the test node has no authentication")
    if "opensearch_ca" in change and not settings.opensearch_ca:
        pytest.skip("the test node is not https with a private CA")
    from dataclasses import replace

    from searchplat_app.application import create_app

    app = create_app(replace(settings, **change))
    response = TestClient(app).get("/ready")
    assert response.status_code == 503
    assert response.json()["reason"].startswith(reason)
    assert_json_error(TestClient(app).get("/search", params={"q": "x"}), 503)


def test_ready_answers_quickly_when_opensearch_hangs(settings: Settings) -> None:
    """A node that accepts connections but never answers (blocked, hung)."""
    import socket

    from searchplat_app.application import create_app
    from searchplat_app.config import load_settings

    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)  # never accepted: the handshake completes, no answer comes
        port = hung.getsockname()[1]
        app = create_app(load_settings({
            "SEARCHPLAT_OPENSEARCH_HOSTS": f"http://127.0.0.1:{port}",
            "SEARCHPLAT_INDEX": settings.index,
            "SEARCHPLAT_INGEST_TOKEN": TEST_TOKEN,
            "SEARCHPLAT_READY_TIMEOUT": "0.5",
            "SEARCHPLAT_OPENSEARCH_TIMEOUT": "0.5",
            "SEARCHPLAT_OPENSEARCH_MAX_RETRIES": "1",
        }))
        test_client = TestClient(app)
        started = time.monotonic()
        response = test_client.get("/ready")
        assert time.monotonic() - started < 2
        assert response.status_code == 503
        assert response.json()["reason"] == "opensearch timed out"
        started = time.monotonic()
        assert_json_error(test_client.get("/search", params={"q": "x"}), 503)
        assert time.monotonic() - started < 3  # 0.5 s, one retry


class _HungNode:
    """A listener that accepts every connection and never answers (a node
    whose process is stopped, or a stuck JVM): counts the connections."""

    def __init__(self) -> None:
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        for conn in self.accepted:
            conn.close()
        self.sock.close()


def test_a_hung_node_costs_a_search_one_short_try_and_is_tried_again_soon(
        opensearch_env: dict[str, str], seeded: list[dict]) -> None:
    """Searches over a hung node and the real ones: each answers after at
    most one search try on the hung node, and the hung node, once left out,
    is tried again after SEARCHPLAT_OPENSEARCH_DEAD_TIMEOUT, not after
    opensearch-py's default back-off (up to 32 minutes)."""
    from searchplat_app.application import create_app
    from searchplat_app.config import load_settings

    scheme = opensearch_env["SEARCHPLAT_OPENSEARCH_HOSTS"].split("://", 1)[0]
    hung = _HungNode()
    try:
        app = create_app(load_settings({
            **opensearch_env,
            "SEARCHPLAT_OPENSEARCH_HOSTS": f"{scheme}://127.0.0.1:{hung.port},{opensearch_env['SEARCHPLAT_OPENSEARCH_HOSTS']}",
            "SEARCHPLAT_OPENSEARCH_SEARCH_TIMEOUT": "0.5",
            "SEARCHPLAT_OPENSEARCH_MAX_RETRIES": "1",
            "SEARCHPLAT_OPENSEARCH_DEAD_TIMEOUT": "2",
        }))
        test_client = TestClient(app)

        def searches(n: int) -> float:
            slowest = 0.0
            for _ in range(n):
                started = time.monotonic()
                response = test_client.get("/search", params={"q": "shard"})
                slowest = max(slowest, time.monotonic() - started)
                assert response.status_code == 200, response.text
                assert response.json()["total"] > 0
            return slowest

        # Round robin over every node: the hung one is met within a round.
        assert searches(8) < 1.5  # one 0.5 s try on the hung node, then another node
        tried = len(hung.accepted)
        assert tried >= 1, "the hung node was never tried"
        # Left out now: searches meet only the others.
        assert searches(8) < 1.0
        assert len(hung.accepted) == tried, "a node that just failed was tried again at once"
        # After the dead time out it gets a search again (and fails it again, briefly).
        time.sleep(2.5)
        assert searches(8) < 1.5
        assert len(hung.accepted) > tried, "the hung node was not tried again after its dead time out"
    finally:
        hung.close()


def test_search_and_ingest_503_when_opensearch_unreachable(broken_client: TestClient) -> None:
    body = assert_json_error(broken_client.get("/search", params={"q": "shard"}), 503)
    assert body["error"] == "search_unavailable" and body["request_id"]
    assert assert_json_error(broken_client.post("/documents", json=[{"title": "t"}],
                                                headers=auth()), 503)["error"] \
        == "ingest_unavailable"
    # Bad input is still a 400, the token still required, without OpenSearch.
    assert_json_error(broken_client.get("/search", params={"q": ""}), 400)
    assert_json_error(broken_client.post("/documents", json=[{"title": "t"}]), 401)


def test_unknown_route_and_method_are_json(client: TestClient) -> None:
    assert assert_json_error(client.get("/does/not/exist"), 404)["error"] == "not_found"
    assert assert_json_error(client.post("/search"), 405)["error"] == "method_not_allowed"
    assert assert_json_error(client.delete("/documents"), 405)["error"] == "method_not_allowed"


# -- page, metrics, request ids, logs ------------------------------------------------

def test_index_page(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp
    assert '<form id="search-form"' in response.text


def metric_value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics(client: TestClient, broken_client: TestClient, seeded) -> None:
    before = client.get("/metrics").text
    client.get("/search", params={"q": "prometheus"})
    client.get("/search", params={"q": ""})
    client.get("/no/such/route/12345")
    broken_client.get("/search", params={"q": "x"})
    client.post("/documents", json=[{"title": "t"}])
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text

    def delta(name: str, **labels: str) -> float:
        return metric_value(text, name, **labels) - metric_value(before, name, **labels)

    assert delta("searchplat_http_requests_total", endpoint="/search", method="GET",
                 status="200") == 1
    assert delta("searchplat_http_requests_total", endpoint="/search", status="400") == 1
    assert delta("searchplat_http_requests_total", endpoint="/search", status="503") == 1
    assert delta("searchplat_http_requests_total", endpoint="unmatched", status="404") == 1
    assert "/no/such/route/12345" not in text
    assert delta("searchplat_http_request_duration_seconds_count", endpoint="/search",
                 status="200") == 1
    assert delta("searchplat_search_requests_total", outcome="ok") == 1
    assert delta("searchplat_search_requests_total", outcome="bad_request") == 1
    assert delta("searchplat_opensearch_errors_total", operation="search",
                 kind="connection") == 1
    assert metric_value(text, "searchplat_ingest_documents_total", result="indexed") >= len(seeded)
    assert delta("searchplat_ingest_requests_total", outcome="unauthorized") == 1
    assert delta("searchplat_http_requests_total", endpoint="/documents", method="POST",
                 status="401") == 1


def test_request_id_echoed_or_generated(client: TestClient) -> None:
    response = client.get("/health", headers={"X-Request-ID": "lb-req-42.a"})
    assert response.headers["x-request-id"] == "lb-req-42.a"
    generated = client.get("/health").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    unsafe = client.get("/health", headers={"X-Request-ID": "bad id\twith tab"})
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe.headers["x-request-id"])
    error = client.get("/search", params={"q": ""}, headers={"X-Request-ID": "err-7"})
    assert error.headers["x-request-id"] == "err-7" and error.json()["request_id"] == "err-7"


def test_json_access_log_line(client: TestClient, seeded) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        client.get("/search", params={"q": "logging", "size": 2},
                   headers={"X-Request-ID": "log-test-1"})
        client.post("/documents", json=[{"title": "t"}],
                    headers={"Authorization": f"Bearer {TEST_TOKEN}-wrong"})
    finally:
        root.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [e for e in lines if e["message"] == "request"]
    search = next(e for e in access if e["path"] == "/search")
    assert search["request_id"] == "log-test-1" and search["method"] == "GET"
    assert search["status"] == 200 and search["route"] == "/search"
    assert isinstance(search["duration_ms"], float)
    assert {"time", "level", "logger"} <= set(search)
    assert "logging" not in json.dumps(search)  # the query string is not logged
    denied = next(e for e in access if e["path"] == "/documents")
    assert denied["status"] == 401
    assert TEST_TOKEN not in stream.getvalue()
