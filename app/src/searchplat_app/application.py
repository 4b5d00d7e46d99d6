"""The application factory: create_app(settings) -> FastAPI."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opensearchpy.exceptions import OpenSearchException
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__, api, web
from .backend import Backend, record_error
from .config import Settings, load_settings
from .logs import setup_logging
from .middleware import RequestContextMiddleware

log = logging.getLogger("searchplat_app")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def create_app(settings: Settings | None = None) -> FastAPI:
    if settings is None:
        settings = load_settings()
    setup_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        backend: Backend = app.state.backend
        log.info("starting", extra={"fields": {
            "version": __version__,
            "opensearch_hosts": [h.url for h in settings.opensearch_hosts],
            "index": settings.index,
            "opensearch_auth": bool(settings.opensearch_user)}})
        try:
            # With /ready's short timeout: a blocked cluster must not hold
            # the worker's start (gunicorn kills silent workers).
            await run_in_threadpool(backend.ensure_index, backend.ready_client)
        except OpenSearchException as exc:
            # Not fatal: /ready reports it and retries.
            record_error("create_index", exc)
        yield
        backend.close()

    app = FastAPI(title="searchplat", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.backend = Backend(settings)
    app.include_router(web.router)
    app.include_router(api.router)
    app.add_middleware(RequestContextMiddleware)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return api.error_response(exc.status_code, code, message,
                                  headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg")}
                   for e in exc.errors()][:20]
        return api.error_response(400, "bad_request", "invalid request", details=details)

    return app
