#!/usr/bin/env python3
"""Placeholder upstream for the lb_haproxy Molecule scenario (test only).

lbtest-upstream.py NAME PORT: HTTP/1.1 with keep-alive on 127.0.0.1:PORT.
Every GET answers 200 with the header `X-Backend: NAME` and a JSON body
naming the backend, the method, the path and the request headers it got.
POST reads the body and answers the same plus the body length. A path
/fail-on/NAME answers 503 on that backend only (retry tests); /sleep/S
answers after S seconds (reload tests). Each request
is logged to stdout (the journal) as "NAME METHOD PATH X-Request-ID".
"""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = sys.argv[1]
PORT = int(sys.argv[2])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, body_length=None):
        print(NAME, self.command, self.path, self.headers.get("X-Request-ID", "-"), flush=True)
        status = 503 if self.path == "/fail-on/" + NAME else 200
        if self.path.startswith("/sleep/"):
            time.sleep(float(self.path.split("/")[2]))
        payload = {
            "backend": NAME,
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
        }
        if body_length is not None:
            payload["body_length"] = body_length
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("X-Backend", NAME)
        self.send_header("X-Powered-By", "lbtest")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        self._answer()

    def do_HEAD(self):
        self._answer()

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._answer(body_length=length)

    def log_message(self, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
