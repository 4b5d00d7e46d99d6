"""Structured logs: one JSON object per line on stdout.

Every line has time, level, logger and message; lines written while a request
is served also carry its request_id (from the load balancer's X-Request-ID).
The access line of each request adds method, path, route, status and
duration_ms. Callers pass extra fields with `extra={"fields": {...}}`; never
pass secrets (password, token) there.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "searchplat_request_id", default=None
)

_HANDLER_MARK = "_searchplat_json_handler"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            exc_type = record.exc_info[0]
            entry["error_type"] = exc_type.__name__ if exc_type else None
            entry["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(level: str = "INFO") -> None:
    """Send the root logger to stdout as JSON (idempotent)."""
    root = logging.getLogger()
    root.setLevel(level)
    if not any(getattr(h, _HANDLER_MARK, False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    # The service writes its own access line; uvicorn's would duplicate it.
    logging.getLogger("uvicorn.access").disabled = True
    # Each retried OpenSearch request is logged by the client at WARNING with
    # the full URL; the service logs failures itself.
    logging.getLogger("opensearch").setLevel(logging.ERROR)
    # The client's tracer logs every request as a curl command line, bodies
    # (documents) included: never wanted in the service's logs.
    tracer = logging.getLogger("opensearchpy.trace")
    tracer.setLevel(logging.WARNING)
    tracer.propagate = False
    logging.getLogger("urllib3").setLevel(logging.ERROR)
