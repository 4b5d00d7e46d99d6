"""Fixtures. The OpenSearch-backed tests use a REAL OpenSearch node given by

    SEARCHPLAT_TEST_OPENSEARCH_HOSTS     e.g. http://127.0.0.1:9200 (required)
    SEARCHPLAT_TEST_OPENSEARCH_USER      basic auth user (optional)
    SEARCHPLAT_TEST_OPENSEARCH_PASSWORD  its password (optional)
    SEARCHPLAT_TEST_OPENSEARCH_CA        CA file for https hosts (optional)
    SEARCHPLAT_TEST_OPENSEARCH_ADMIN_USER      a user that may create and delete
    SEARCHPLAT_TEST_OPENSEARCH_ADMIN_PASSWORD  any index (required with _USER)

Without SEARCHPLAT_TEST_OPENSEARCH_HOSTS those tests fail (error at setup)
with a message saying so; the pure unit tests still run. The admin user is
used by the tests only, for what the least-privilege app user may not do
(create and remove a red index); the service under test never gets it. Each session works in
its own index search-test-<random> (inside the app user's "search-*" pattern)
and deletes it at the end when the user may.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from opensearchpy import OpenSearch

from searchplat_app.application import create_app
from searchplat_app.backend import build_client
from searchplat_app.config import Settings, load_settings
from searchplat_app.seed import load_corpus

TEST_TOKEN = "test-ingest-token-0123456789"
TEST_MAX_DOCUMENTS = 50
TEST_MAX_BYTES = 64 * 1024


def _opensearch_env() -> dict[str, str]:
    hosts = os.environ.get("SEARCHPLAT_TEST_OPENSEARCH_HOSTS", "").strip()
    if not hosts:
        pytest.fail(
            "SEARCHPLAT_TEST_OPENSEARCH_HOSTS is not set: these tests need a real "
            "OpenSearch node, e.g. SEARCHPLAT_TEST_OPENSEARCH_HOSTS=http://127.0.0.1:9200 "
            "(plus _USER, _PASSWORD, _CA for a secured cluster); see app/README.md",
            pytrace=False,
        )
    return {
        "SEARCHPLAT_OPENSEARCH_HOSTS": hosts,
        "SEARCHPLAT_OPENSEARCH_USER": os.environ.get("SEARCHPLAT_TEST_OPENSEARCH_USER", ""),
        "SEARCHPLAT_OPENSEARCH_PASSWORD": os.environ.get("SEARCHPLAT_TEST_OPENSEARCH_PASSWORD", ""),
        "SEARCHPLAT_OPENSEARCH_CA": os.environ.get("SEARCHPLAT_TEST_OPENSEARCH_CA", ""),
    }


@pytest.fixture(scope="session")
def test_index() -> str:
    return f"search-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def opensearch_env(test_index: str) -> dict[str, str]:
    """Environment variables (SEARCHPLAT_*) pointing the service at the test node."""
    env = _opensearch_env()
    env.update({
        "SEARCHPLAT_INDEX": test_index,
        "SEARCHPLAT_INGEST_TOKEN": TEST_TOKEN,
        "SEARCHPLAT_INGEST_MAX_DOCUMENTS": str(TEST_MAX_DOCUMENTS),
        "SEARCHPLAT_INGEST_MAX_BYTES": str(TEST_MAX_BYTES),
        "SEARCHPLAT_OPENSEARCH_TIMEOUT": "10",
    })
    return env


@pytest.fixture(scope="session")
def settings(opensearch_env: dict[str, str]) -> Settings:
    return load_settings(opensearch_env)


@pytest.fixture(scope="session")
def os_client(settings: Settings) -> Iterator[OpenSearch]:
    """A plain client on the test node (checks, counts, cleanup)."""
    client = build_client(settings)
    try:
        # Allowed to the least-privilege app user (GET / is not).
        client.indices.exists(index=settings.index)
    except Exception as exc:  # noqa: BLE001 - report any failure clearly
        pytest.fail(f"OpenSearch at {[h.url for h in settings.opensearch_hosts]} "
                    f"is not usable: {type(exc).__name__}: {exc}", pytrace=False)
    yield client
    try:
        client.indices.delete(index=settings.index, params={"ignore_unavailable": "true"})
    except Exception as exc:  # noqa: BLE001 - least-privilege users may not delete
        print(f"note: could not delete test index {settings.index}: {type(exc).__name__}")
    client.close()


@pytest.fixture(scope="session")
def admin_os_client(settings: Settings) -> Iterator[OpenSearch]:
    """A client on the test node as a user that may create and delete any
    index (SEARCHPLAT_TEST_OPENSEARCH_ADMIN_*); for a node without
    authentication, the plain client's settings. Missing on a secured node:
    the tests that need it fail, they do not skip."""
    user = os.environ.get("SEARCHPLAT_TEST_OPENSEARCH_ADMIN_USER", "")
    password = os.environ.get("SEARCHPLAT_TEST_OPENSEARCH_ADMIN_PASSWORD", "")
    if settings.opensearch_user and not (user and password):
        pytest.fail("SEARCHPLAT_TEST_OPENSEARCH_ADMIN_USER and _ADMIN_PASSWORD are not set: a secured test "
                    "node needs a user that may create and delete indices (scripts/test passes the lab's "
                    "admin)", pytrace=False)
    admin = build_client(replace(settings, opensearch_user=user, opensearch_password=password) if user
                         else settings)
    yield admin
    admin.close()


@pytest.fixture(scope="session")
def client(settings: Settings, os_client: OpenSearch) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def seeded(client: TestClient, os_client: OpenSearch, settings: Settings) -> list[dict]:
    """The bundled corpus, ingested through POST /documents (batches of 50)."""
    corpus = load_corpus()
    for start in range(0, len(corpus), TEST_MAX_DOCUMENTS):
        batch = corpus[start:start + TEST_MAX_DOCUMENTS]
        response = client.post("/documents?refresh=true", json=batch,
                               headers={"Authorization": f"Bearer {TEST_TOKEN}"})
        assert response.status_code == 200, response.text
        assert response.json()["failed"] == 0
    return corpus


@pytest.fixture(scope="session")
def broken_client(settings: Settings) -> Iterator[TestClient]:
    """A second app instance whose only OpenSearch host is a closed port."""
    env = {
        "SEARCHPLAT_OPENSEARCH_HOSTS": "http://127.0.0.1:1",
        "SEARCHPLAT_INDEX": settings.index,
        "SEARCHPLAT_INGEST_TOKEN": TEST_TOKEN,
        "SEARCHPLAT_OPENSEARCH_TIMEOUT": "2",
        "SEARCHPLAT_READY_TIMEOUT": "1",
    }
    with TestClient(create_app(load_settings(env))) as test_client:
        yield test_client


def auth(token: str = TEST_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
