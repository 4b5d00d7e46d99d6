"""The ASGI application: `searchplat_app.main:app`.

Production: gunicorn -c python:searchplat_app.gunicorn_conf searchplat_app.main:app
(uvicorn workers). Settings come from the environment (see config.py and
README.md); an invalid environment stops the worker at import with a clear
message listing every problem.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from .application import create_app
from .config import ConfigError
from .logs import setup_logging

log = logging.getLogger("searchplat_app")


def _app_from_environment() -> FastAPI:
    try:
        return create_app()
    except ConfigError as exc:
        setup_logging()
        log.critical(str(exc), extra={"fields": {"problems": exc.problems}})
        raise SystemExit(f"searchplat-app: {exc}") from None


app = _app_from_environment()
