"""The API's HTTP server: `build_app` served on the configured address.

node/node.py starts and stops it; only node/http/ imports aiohttp's web server. The
connection guard of node/http/connections.py (connections per address, the first request's
header deadline) is hooked into the server once it is set up.
"""

from __future__ import annotations

from aiohttp import web

from node.http.app import build_app
from node.http.connections import ConnectionGuard
from node.http.limits import LIMITS_KEY
from node.http.services import HttpServices

KEEPALIVE_TIMEOUT_S = 75
"""How long an idle keep-alive connection stays open."""


class HttpServer:
    """Serves the API of one node."""

    def __init__(self, services: HttpServices, host: str, port: int) -> None:
        self.services = services
        """What the handlers read."""
        self.host = host
        """The address to listen on."""
        self.port = port
        """The TCP port (0: any free port)."""
        self._runner: web.AppRunner | None = None
        self._guard: ConnectionGuard | None = None

    async def start(self) -> None:
        """Build the application and start listening."""
        app = build_app(self.services)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, keepalive_timeout=KEEPALIVE_TIMEOUT_S
        )
        await self._runner.setup()
        self._guard = app[LIMITS_KEY].guard
        assert self._runner.server is not None
        self._guard.install(self._runner.server)
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()

    async def stop(self) -> None:
        """Close every connection and stop listening (nothing if never started)."""
        if self._guard is not None:
            await self._guard.stop()
        if self._runner is not None:
            await self._runner.cleanup()
