"""The explorer's JavaScript modules in headless Chromium, without a node.

`serve_static()` serves node/http/static/ at `/static/NAME` on an ephemeral loopback port,
with an empty page at `/` (a secure context: crypto.subtle and Ed25519 are there), the
way the node serves them (node/http/app.py). `run_module_script(driver, body, argument)`
runs an async JavaScript function body in that page, where `argument` is the JSON value
passed in and `load(name)` imports `/static/name`, and returns what the body returns;
a thrown error fails with the browser's message.

    with serve_static() as url:
        driver = start_chromium(profile)
        driver.get(url)
        assert run_module_script(driver, 'return (await load("verify.js")).toHex(new Uint8Array([1]))', None) == "01"
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.e2e.browser import missing_browser, start_chromium
from tests.paths import REPO_ROOT

STATIC_DIRECTORY = REPO_ROOT / "node" / "http" / "static"
PAGE = b"<!doctype html><html><head><meta charset='utf-8'><title>js tests</title></head><body></body></html>"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        if self.path == "/":
            self._send(200, "text/html; charset=utf-8", PAGE)
            return
        name = self.path.removeprefix("/static/")
        path = STATIC_DIRECTORY / name
        if not self.path.startswith("/static/") or "/" in name or not name.endswith(".js") or not path.is_file():
            self._send(404, "text/plain", b"not found")
            return
        self._send(200, "text/javascript", path.read_bytes())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the http.server signature
        """Quiet: the test output is the assertions."""


@contextmanager
def serve_static() -> Iterator[str]:
    """Serve the explorer's static files on 127.0.0.1 (ephemeral port); yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class BrowserScriptError(AssertionError):
    """The script threw in the browser."""


_WRAPPER = """
const done = arguments[arguments.length - 1];
const argument = arguments[0];
const load = (name) => import("/static/" + name);
(async () => { %s })().then(
  (value) => done({value: value === undefined ? null : value}),
  (error) => done({error: String(error && error.stack || error)}));
"""


def run_module_script(driver: Any, body: str, argument: Any) -> Any:
    """Run the async function `body` in the page (with `argument` and `load`) and return its result."""
    outcome = driver.execute_async_script(_WRAPPER % body, argument)
    if "error" in outcome:
        raise BrowserScriptError(outcome["error"])
    return outcome["value"]


@pytest.fixture(scope="module", name="driver")
def page_driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Chromium with the static page of the explorer's modules open (module scope)."""
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    with serve_static() as url:
        browser = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
        try:
            browser.get(url)
            yield browser
        finally:
            browser.quit()
