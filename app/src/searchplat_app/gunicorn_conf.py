"""gunicorn settings: gunicorn -c python:searchplat_app.gunicorn_conf searchplat_app.main:app

Command-line options override these. With PROMETHEUS_MULTIPROC_DIR set, the
directory is emptied when the master starts (stale worker files would be
added to the new totals) and dead workers' live-value files are released.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

bind = os.environ.get("SEARCHPLAT_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("SEARCHPLAT_WORKERS", "2"))
worker_class = "uvicorn_worker.UvicornWorker"
# Seconds a silent worker is given before it is killed and replaced; and the
# time workers get to finish requests on restart/stop.
timeout = 30
graceful_timeout = 20
keepalive = 5
# The service logs its own JSON access line. gunicorn's and uvicorn's own
# messages (start, stop, worker boot and exit) are JSON lines on stdout too;
# the root handler is added by the application (logs.setup_logging).
accesslog = None
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "searchplat_app.logs.JsonFormatter"}},
    "handlers": {
        "json_stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        },
    },
    "root": {"level": "INFO", "handlers": []},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["json_stdout"], "propagate": False},
        "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
    },
}
# Addresses whose X-Forwarded-* headers are trusted (the load balancers).
forwarded_allow_ips = os.environ.get("SEARCHPLAT_FORWARDED_ALLOW_IPS", "127.0.0.1")
# gunicorn >= 24 opens a runtime control socket (in ~/.gunicorn by default);
# systemd manages the service, so none is opened.
control_socket_disable = True


def on_starting(server: Any) -> None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
