"""A lying node for the CLI's end-to-end tests: an HTTP proxy in front of a real node that
passes every request through, except that it rewrites the JSON of `GET /orders/{id}`.

It stands for a malicious node that wants a merchant's `tx order-ship` to re-seal the
attacker's address for the carrier (issue 13): everything else it serves is the real
node's, so only the CLI's own checks can catch the swap.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OrderRewrite = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns the real node's order JSON into the lie served instead."""


@contextmanager
def lying_node(upstream: str, rewrite_order: OrderRewrite) -> Iterator[str]:
    """A proxy of the node at `upstream` on a free loopback port, serving `rewrite_order(order)`
    for every `GET /orders/{id}`; yields its base URL, stops on exit."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            self._forward(None)

        def do_POST(self) -> None:  # noqa: N802
            self._forward(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

        def _forward(self, body: bytes | None) -> None:
            request = urllib.request.Request(upstream + self.path, data=body, method=self.command)
            if self.headers.get("Content-Type"):
                request.add_header("Content-Type", self.headers["Content-Type"])
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status, content_type, data = response.status, response.headers.get("Content-Type"), response.read()
            except urllib.error.HTTPError as error:
                status, content_type, data = error.code, error.headers.get("Content-Type"), error.read()
            path = self.path.split("?")[0]
            if self.command == "GET" and status == 200 and path.startswith("/orders/") and path.count("/") == 2:
                data = json.dumps(rewrite_order(json.loads(data))).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type or "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *arguments: Any) -> None:  # noqa: A002 (http.server's name)
            """Quiet: the test's output is the CLI's."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
