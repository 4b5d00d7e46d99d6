"""HTTP endpoints: search, ingest, health, readiness, metrics."""

from __future__ import annotations

import hmac
import json
import logging
import socket
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from opensearchpy.exceptions import NotFoundError, OpenSearchException
from starlette.concurrency import run_in_threadpool

from . import metrics
from .backend import Backend, record_error
from .logs import request_id_var
from .validation import InputError, validate_documents, validate_search

log = logging.getLogger("searchplat_app.api")
router = APIRouter()


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"error": code, "message": message}
    body.update(extra)
    request_id = request_id_var.get()
    if request_id:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=status, headers=headers)


def backend_unavailable(operation: str, exc: OpenSearchException,
                        code: str = "search_unavailable") -> JSONResponse:
    """503 for a failed OpenSearch call: counted and logged, never shown."""
    record_error(operation, exc)
    return error_response(503, code, "the search backend is unavailable, try again later",
                          headers={"Retry-After": "5"})


def input_error_response(exc: InputError) -> JSONResponse:
    if exc.details:
        return error_response(exc.status, exc.code, exc.message, details=exc.details)
    return error_response(exc.status, exc.code, exc.message)


def _backend(request: Request) -> Backend:
    return request.app.state.backend


@router.api_route("/health", methods=["GET", "HEAD"])
def health() -> dict[str, str]:
    """Liveness: no dependency is checked. (HEAD too, for load balancer checks.)
    Names the instance that answered, so an operator (or a test) behind the
    load balancer sees which app server served the request."""
    return {"status": "ok", "instance": socket.gethostname()}


@router.api_route("/live", methods=["GET", "HEAD"])
def live() -> dict[str, str]:
    return {"status": "ok"}


@router.api_route("/ready", methods=["GET", "HEAD"])
def ready(request: Request) -> JSONResponse:
    result = _backend(request).readiness()
    if result.ready:
        return JSONResponse({"status": "ready", **result.details})
    return JSONResponse(
        {"status": "not_ready", "reason": result.reason, **result.details},
        status_code=503,
    )


@router.get("/metrics")
def metrics_endpoint() -> Response:
    payload, content_type = metrics.render()
    return Response(payload, media_type=content_type)


def _shape_hit(hit: dict[str, Any]) -> dict[str, Any]:
    source = hit.get("_source") or {}
    highlight = hit.get("highlight") or {}
    snippets = highlight.get("body") or []
    titles = highlight.get("title") or []
    result: dict[str, Any] = {
        "id": hit.get("_id"),
        "title": source.get("title", ""),
        "title_highlight": titles[0] if titles else None,
        "snippet": snippets[0] if snippets else "",
        "score": hit.get("_score"),
    }
    if source.get("url"):
        result["url"] = source["url"]
    if source.get("tags"):
        result["tags"] = source["tags"]
    return result


@router.get("/search")
def search(request: Request, q: str | None = None, page: str | None = None,
           size: str | None = None) -> JSONResponse:
    """Full-text search. `snippet` and `title_highlight` are HTML: the text is
    escaped by OpenSearch's html encoder and only <mark> tags are markup."""
    try:
        query, page_no, page_size = validate_search(q, page, size)
    except InputError as exc:
        metrics.SEARCHES.labels(outcome="bad_request").inc()
        return input_error_response(exc)
    backend = _backend(request)
    try:
        response = backend.search(query, page_no, page_size)
    except NotFoundError as exc:
        # The index does not exist yet: nothing to find. Create it for later.
        record_error("search", exc)
        try:
            backend.ensure_index()
        except OpenSearchException as create_exc:
            record_error("create_index", create_exc)
        response = {"took": 0, "hits": {"total": {"value": 0}, "hits": []}}
    except OpenSearchException as exc:
        metrics.SEARCHES.labels(outcome="error").inc()
        return backend_unavailable("search", exc)
    hits = response.get("hits", {})
    total = hits.get("total", 0)
    metrics.SEARCHES.labels(outcome="ok").inc()
    return JSONResponse({
        "query": query,
        "page": page_no,
        "size": page_size,
        "total": total.get("value", 0) if isinstance(total, dict) else int(total),
        "took_ms": response.get("took", 0),
        "results": [_shape_hit(h) for h in hits.get("hits", [])],
    })


def _authorized(request: Request, expected: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        # Still compare, so a missing token costs the same as a wrong one.
        token = ""
    return hmac.compare_digest(token.strip().encode("utf-8"), expected.encode("utf-8")) \
        and bool(expected)


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise InputError(f"the body must be at most {limit} bytes", status=413,
                         code="payload_too_large")
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise InputError(f"the body must be at most {limit} bytes", status=413,
                             code="payload_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/documents")
async def ingest(request: Request, refresh: str | None = None) -> JSONResponse:
    """Bulk ingest: a JSON array of {id?, title, body?, tags?, url?}.

    Authorization: Bearer <SEARCHPLAT_INGEST_TOKEN>. Documents with an id
    replace the stored document with that id (idempotent re-ingest).
    `?refresh=true` waits until the documents are searchable.
    """
    settings = _backend(request).settings
    if not _authorized(request, settings.ingest_token):
        metrics.INGEST_REQUESTS.labels(outcome="unauthorized").inc()
        return error_response(401, "unauthorized", "a valid bearer token is required",
                              headers={"WWW-Authenticate": 'Bearer realm="searchplat"'})
    try:
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise InputError("Content-Type must be application/json", status=415,
                             code="unsupported_media_type")
        if refresh not in (None, "", "true", "false"):
            raise InputError("refresh must be true or false")
        raw = await _read_body(request, settings.ingest_max_bytes)
        try:
            payload = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise InputError("the body is not valid JSON") from None
        documents = validate_documents(payload, settings.ingest_max_documents)
    except InputError as exc:
        metrics.INGEST_REQUESTS.labels(outcome="bad_request").inc()
        return input_error_response(exc)
    try:
        result = await run_in_threadpool(
            _backend(request).bulk_index, documents, refresh=refresh == "true"
        )
    except OpenSearchException as exc:
        metrics.INGEST_REQUESTS.labels(outcome="error").inc()
        return backend_unavailable("bulk", exc, code="ingest_unavailable")
    metrics.INGEST_REQUESTS.labels(outcome="ok").inc()
    metrics.INGEST_DOCUMENTS.labels(result="indexed").inc(result["indexed"])
    metrics.INGEST_DOCUMENTS.labels(result="failed").inc(result["failed"])
    log.info("documents ingested", extra={"fields": {
        "indexed": result["indexed"], "failed": result["failed"]}})
    return JSONResponse(result)
