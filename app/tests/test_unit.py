"""Pure unit tests: no OpenSearch needed."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re

import pytest

from searchplat_app.config import ConfigError, load_settings
from searchplat_app.logs import JsonFormatter, request_id_var
from searchplat_app.seed import load_corpus
from searchplat_app.validation import (
    InputError,
    clean_request_id,
    validate_documents,
    validate_search,
)
from searchplat_app.web import page

GOOD = {
    "SEARCHPLAT_OPENSEARCH_HOSTS": "https://10.0.0.1:9200, https://10.0.0.2:9200,https://os3.example:9201",
    "SEARCHPLAT_OPENSEARCH_USER": "searchapp",
    "SEARCHPLAT_OPENSEARCH_PASSWORD": "s3cret-password",
    "SEARCHPLAT_INGEST_TOKEN": "x" * 32,
}


def problems_of(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    return str(info.value)


def test_config_defaults_and_hosts() -> None:
    s = load_settings(GOOD)
    assert [h.url for h in s.opensearch_hosts] == [
        "https://10.0.0.1:9200", "https://10.0.0.2:9200", "https://os3.example:9201"]
    assert s.use_tls
    assert s.index == "search-documents"  # inside the app user's "search-*" pattern
    assert s.opensearch_timeout == 5.0 and s.opensearch_max_retries == 2
    assert s.opensearch_retry_on_timeout is True
    assert s.ready_timeout == 1.0
    assert s.opensearch_search_timeout is None and s.opensearch_dead_timeout == 10.0
    assert load_settings({**GOOD, "SEARCHPLAT_OPENSEARCH_SEARCH_TIMEOUT": "0.9"}).opensearch_search_timeout == 0.9
    assert s.ingest_max_documents == 500


def test_config_secrets_not_in_repr() -> None:
    text = repr(load_settings(GOOD))
    assert "s3cret-password" not in text and "x" * 32 not in text


@pytest.mark.parametrize("env, expected", [
    ({}, "SEARCHPLAT_OPENSEARCH_HOSTS is required"),
    ({"SEARCHPLAT_OPENSEARCH_HOSTS": "10.0.0.1:9200"}, "must look like https://host:9200"),
    ({"SEARCHPLAT_OPENSEARCH_HOSTS": "ftp://a:9200"}, "must look like https://host:9200"),
    ({"SEARCHPLAT_OPENSEARCH_HOSTS": "https://u:p@a:9200"}, "must not contain credentials"),
    ({"SEARCHPLAT_OPENSEARCH_HOSTS": "https://a:9200/x"}, "must not have a path"),
    ({"SEARCHPLAT_OPENSEARCH_HOSTS": "https://a:99999"}, "is not a URL"),
    ({"SEARCHPLAT_OPENSEARCH_HOSTS": "https://a:9200,http://b:9200"}, "mixes http and https"),
    ({"SEARCHPLAT_OPENSEARCH_HOSTS": "https://a:9200,https://a:9200"}, "lists a host twice"),
    ({"SEARCHPLAT_OPENSEARCH_PASSWORD": ""}, "must be set together"),
    ({"SEARCHPLAT_OPENSEARCH_CA": "/nonexistent/ca.pem"}, "is not a readable file"),
    ({"SEARCHPLAT_INGEST_TOKEN": "short"}, "SEARCHPLAT_INGEST_TOKEN is required"),
    ({"SEARCHPLAT_INDEX": "Search Docs"}, "is not a valid index name"),
    ({"SEARCHPLAT_OPENSEARCH_TIMEOUT": "abc"}, "is not a number"),
    ({"SEARCHPLAT_OPENSEARCH_SEARCH_TIMEOUT": "soon"}, "SEARCHPLAT_OPENSEARCH_SEARCH_TIMEOUT='soon' is not a number"),
    ({"SEARCHPLAT_OPENSEARCH_SEARCH_TIMEOUT": "0"}, "SEARCHPLAT_OPENSEARCH_SEARCH_TIMEOUT=0 is out of range"),
    ({"SEARCHPLAT_OPENSEARCH_DEAD_TIMEOUT": "0.5"}, "SEARCHPLAT_OPENSEARCH_DEAD_TIMEOUT=0.5 is out of range"),
    ({"SEARCHPLAT_OPENSEARCH_MAX_RETRIES": "99"}, "out of range"),
    ({"SEARCHPLAT_OPENSEARCH_RETRY_ON_TIMEOUT": "maybe"}, "is not a boolean"),
    ({"SEARCHPLAT_LOG_LEVEL": "LOUD"}, "SEARCHPLAT_LOG_LEVEL"),
])
def test_config_errors(env: dict[str, str], expected: str) -> None:
    merged = {**GOOD, **env} if env else {}
    message = problems_of(merged)
    assert expected in message
    assert "s3cret-password" not in message


def test_config_lists_every_problem() -> None:
    message = problems_of({"SEARCHPLAT_OPENSEARCH_HOSTS": "nope",
                           "SEARCHPLAT_INGEST_TOKEN": "short"})
    assert "SEARCHPLAT_OPENSEARCH_HOSTS" in message and "SEARCHPLAT_INGEST_TOKEN" in message


def test_config_ca_file(tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    s = load_settings({**GOOD, "SEARCHPLAT_OPENSEARCH_CA": str(ca)})
    assert s.opensearch_ca == str(ca)
    assert "hosts use http" in problems_of({**GOOD, "SEARCHPLAT_OPENSEARCH_CA": str(ca),
                                             "SEARCHPLAT_OPENSEARCH_HOSTS": "http://a:9200"})


def test_config_seed_does_not_need_token() -> None:
    env = {"SEARCHPLAT_OPENSEARCH_HOSTS": "http://127.0.0.1:9200"}
    assert load_settings(env, require_ingest_token=False).ingest_token == ""


def test_validate_search_ok() -> None:
    assert validate_search("  shard   replica ", None, None) == ("shard replica", 1, 10)
    assert validate_search("x" * 200, "200", "50") == ("x" * 200, 200, 50)
    assert validate_search("ünïcode 検索", "1", "1") == ("ünïcode 検索", 1, 1)


@pytest.mark.parametrize("q, page, size", [
    (None, None, None), ("", None, None), ("   ", None, None), ("x" * 201, None, None),
    ("a\x00b", None, None), ("a\x1bb", None, None), ("a\nb", None, None),
    ("x", "0", None), ("x", "-1", None), ("x", "1.5", None), ("x", "abc", None),
    ("x", "٣", None), ("x", "1e3", None), ("x", "9999999", None),
    ("x", None, "0"), ("x", None, "51"), ("x", None, " 5"), ("x", "201", "50"),
    ("x", "10001", "1"),
])
def test_validate_search_rejects(q, page, size) -> None:
    with pytest.raises(InputError) as info:
        validate_search(q, page, size)
    assert info.value.status == 400


def test_request_id_cleaning() -> None:
    assert clean_request_id("abc-123_X.y:z") == "abc-123_X.y:z"
    for bad in (None, "", "has space", "x" * 129, "new\nline", "quote\""):
        assert clean_request_id(bad) is None


def test_validate_documents() -> None:
    docs = validate_documents([{"id": "a-1", "title": " T ", "tags": ["x"]}], 10)
    assert docs == [{"id": "a-1", "title": "T", "body": "", "tags": ["x"]}]
    for payload, status in (({}, 400), ([], 400), ([{"title": "t"}] * 11, 413),
                            ([{"body": "no title"}], 400), ([{"title": "t", "extra": 1}], 400),
                            ([{"id": "bad id", "title": "t"}], 400),
                            ([{"title": "t", "tags": [""]}], 400),
                            ([{"title": "t", "url": "javascript:alert(1)"}], 400),
                            (["not an object"], 400)):
        with pytest.raises(InputError) as info:
            validate_documents(payload, 10)
        assert info.value.status == status, payload


def test_seed_corpus_is_valid() -> None:
    corpus = load_corpus()
    assert 50 <= len(corpus) <= 200
    ids = [d["id"] for d in corpus]
    assert len(set(ids)) == len(ids) and all(i.startswith("seed-") for i in ids)


def test_json_formatter_fields() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("searchplat_app.test_formatter")
    logger.addHandler(handler)
    logger.propagate = False
    token = request_id_var.set("rid-1")
    try:
        logger.warning("hello %s", "world", extra={"fields": {"status": 200}})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("failed")
    finally:
        request_id_var.reset(token)
        logger.removeHandler(handler)
    first, second = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert first["message"] == "hello world" and first["level"] == "WARNING"
    assert first["request_id"] == "rid-1" and first["status"] == 200
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", first["time"])
    assert second["error_type"] == "RuntimeError" and "boom" in second["traceback"]


def test_page_has_no_external_assets_and_csp_matches() -> None:
    html, csp = page()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert not re.search(r"\son[a-z]+\s*=", html, re.IGNORECASE), "inline event handler"
    assert "style=" not in html
    for tag in ("script", "style"):
        body = re.search(rf"<{tag}>(.*?)</{tag}>", html, re.DOTALL).group(1)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "unsafe-inline" not in csp
    # Relative fetch URL: works at the site root and behind TLS termination.
    assert 'new URL("search", document.baseURI)' in html


def test_nodes_take_turns_across_threads_and_a_failed_node_returns_soon() -> None:
    """Each request of any thread goes to the next node (opensearch-py's own
    round robin is per thread: every new thread starts at the first node);
    a node marked dead is left out for SEARCHPLAT_OPENSEARCH_DEAD_TIMEOUT,
    doubled at most twice."""
    import threading

    from searchplat_app.backend import build_client

    settings = load_settings({**GOOD, "SEARCHPLAT_OPENSEARCH_DEAD_TIMEOUT": "7"})
    pool = build_client(settings).transport.connection_pool
    chosen: list[str] = []
    threads = [threading.Thread(target=lambda: chosen.append(pool.get_connection().host)) for _ in range(6)]
    for t in threads:
        t.start()
        t.join()
    assert sorted(chosen) == sorted([h.url for h in settings.opensearch_hosts] * 2)
    assert pool.dead_timeout == 7 and 7 * 2 ** pool.timeout_cutoff == 28
