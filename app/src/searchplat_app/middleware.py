"""Per-request context: request id, access log line, HTTP metrics, last-resort
error handling (a JSON 500 without a stack trace to the client)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .logs import request_id_var
from .metrics import HTTP_LATENCY, HTTP_REQUESTS
from .validation import clean_request_id

log = logging.getLogger("searchplat_app.access")
REQUEST_ID_HEADER = "x-request-id"
# Probes and scrapes: logged at DEBUG when they succeed (they come every few
# seconds from each load balancer and Prometheus).
QUIET_ENDPOINTS = frozenset({"/health", "/live", "/ready", "/metrics"})
# Metric label values stay bounded whatever method a client sends.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = clean_request_id(_header(scope, REQUEST_ID_HEADER.encode())) \
            or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        state: dict[str, Any] = {"status": 500, "started": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != REQUEST_ID_HEADER.encode()]
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("unhandled error", extra={"fields": {
                "method": scope.get("method"), "path": scope.get("path")}})
            state["status"] = 500
            if not state["started"]:
                body = json.dumps({"error": "internal_error",
                                   "message": "internal server error",
                                   "request_id": request_id}).encode()
                await send_wrapper({"type": "http.response.start", "status": 500,
                                    "headers": [(b"content-type", b"application/json"),
                                                (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
        finally:
            duration = time.perf_counter() - started
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            if method not in KNOWN_METHODS:
                method = "OTHER"
            status = str(state["status"])
            HTTP_REQUESTS.labels(method=method, endpoint=endpoint, status=status).inc()
            HTTP_LATENCY.labels(method=method, endpoint=endpoint, status=status).observe(duration)
            quiet = endpoint in QUIET_ENDPOINTS and state["status"] < 400
            log.log(logging.DEBUG if quiet else logging.INFO, "request", extra={"fields": {
                "method": method,
                "path": scope.get("path", ""),
                "route": endpoint,
                "status": state["status"],
                "duration_ms": round(duration * 1000, 2),
                "client": (scope.get("client") or ("", 0))[0],
                "scheme": scope.get("scheme", ""),
            }})
            request_id_var.reset(token)
