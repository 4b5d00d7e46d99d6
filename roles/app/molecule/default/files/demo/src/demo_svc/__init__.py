"""A minimal WSGI service: what a user's own service looks like to roles/app.

/ready answers 200 unless DEMO_READY is "false" (the Molecule scenario's
broken release); /version names the release; /env shows that the
environment file reached the process (never the secret itself).
"""

import json
import os
from importlib.metadata import version

VERSION = version("demo-svc")


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    status, body = "404 Not Found", {"error": "not found"}
    if path == "/ready":
        if os.environ.get("DEMO_READY", "true") == "false":
            status, body = "503 Service Unavailable", {"status": "not_ready"}
        else:
            status, body = "200 OK", {"status": "ready"}
    elif path == "/version":
        status, body = "200 OK", {"version": VERSION}
    elif path == "/env":
        status, body = "200 OK", {"greeting": os.environ.get("DEMO_GREETING", ""),
                                  "token_set": bool(os.environ.get("DEMO_TOKEN"))}
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def seed():
    """Console script run once by the role (app_seed_command)."""
    print(json.dumps({"seeded": VERSION, "token_set": bool(os.environ.get("DEMO_TOKEN"))}))
