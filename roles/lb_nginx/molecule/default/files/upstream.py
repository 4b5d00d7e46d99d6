#!/usr/bin/env python3
"""Placeholder app server for the lb_nginx Molecule scenario.

Usage: upstream.py NAME PORT. Listens on 127.0.0.1:PORT (HTTP/1.1, keepalive)
and answers every GET, HEAD and POST with 200 and a JSON body echoing what it
received (method, path, headers, body length); the header X-Backend names the
server. Two paths exist for the retry tests:
  /only-up2   503 on every server except up2
  /slow       sleeps 2 s, then 200
"""

import http.server
import json
import sys
import time

NAME = sys.argv[1]
PORT = int(sys.argv[2])


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "lb-test-upstream"

    def _answer(self, send_body=True):
        length = int(self.headers.get("Content-Length") or 0)
        received = self.rfile.read(length) if length else b""
        status = 200
        if self.path.startswith("/only-up2") and NAME != "up2":
            status = 503
        if self.path.startswith("/slow"):
            time.sleep(2)
        body = json.dumps(
            {
                "backend": NAME,
                "method": self.command,
                "path": self.path,
                "headers": dict(self.headers.items()),
                "body_length": len(received),
            }
        ).encode()
        self.send_response(status)
        self.send_header("X-Backend", NAME)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        # The load balancer must drop the app's own copy of this header.
        self.send_header("X-Frame-Options", "SAMEORIGIN")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self._answer()

    def do_POST(self):  # noqa: N802
        self._answer()

    def do_HEAD(self):  # noqa: N802
        self._answer(send_body=False)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer.daemon_threads = True
http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
