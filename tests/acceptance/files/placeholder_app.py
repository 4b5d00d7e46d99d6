#!/usr/bin/env python3
"""Placeholder upstream for the load-balancer tests, until the app tier
(issue #6) serves port 8000. Answers every GET/HEAD with 200 and a JSON body
naming this backend and echoing the proxy headers it received; /ready and
/health answer 200. Standard library only.

    placeholder_app.py ADDRESS PORT NAME
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    server_version = "placeholder"
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY each
    # response waits ~40 ms for the client's delayed ACK (Nagle).
    disable_nagle_algorithm = True

    def _answer(self, body: bool) -> None:
        payload = json.dumps({
            "backend": self.server.backend_name,
            "path": self.path,
            "x_forwarded_for": self.headers.get("X-Forwarded-For"),
            "x_forwarded_proto": self.headers.get("X-Forwarded-Proto"),
            "x_request_id": self.headers.get("X-Request-ID"),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Backend", self.server.backend_name)
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def do_GET(self):  # noqa: N802 (http.server API)
        self._answer(True)

    def do_HEAD(self):  # noqa: N802
        self._answer(False)

    def log_message(self, *args):
        pass


def main() -> None:
    address, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    server = ThreadingHTTPServer((address, port), Handler)
    server.backend_name = name
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
