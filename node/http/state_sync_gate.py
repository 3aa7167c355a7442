"""While the node restores a snapshot (state sync, PROTOCOL R39), the API answers 503 `syncing`.

The state, the blocks and the marketplace indexes are partial or absent until the restore
finishes, so every read of them and every `POST /txs*` answers 503 with code `syncing`
and the progress ("restoring snapshot of height H: k/n chunks"); what does not read them
still works: `/status`, `/metrics`, `/openapi.json`, `/snapshots*`, the explorer page
(`/`, `/static/*`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.http.errors import ApiError
from node.http.services import SERVICES_KEY

OPEN_PATHS = frozenset({"/", "/status", "/metrics", "/openapi.json", "/snapshots"})
"""Paths served during state sync."""
OPEN_PREFIXES = ("/snapshots/", "/static/")
"""Path prefixes served during state sync."""


def is_open_while_syncing(path: str) -> bool:
    """True for a path that does not read the state, blocks or indexes."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def syncing_message(progress: dict[str, Any]) -> str:
    """What a 503 `syncing` answer says."""
    height = progress.get("height")
    if height is None:
        return "this node is joining by state sync: looking for a snapshot; try again later"
    return f"this node is joining by state sync: restoring snapshot of height {height}: {progress.get('chunks')} chunks"


@web.middleware
async def state_sync_gate(request: web.Request, handler: Any) -> web.StreamResponse:
    """503 `syncing` for what reads the state while a snapshot is being restored."""
    progress = request.app[SERVICES_KEY].runtime.state_sync()
    if progress is not None and not is_open_while_syncing(request.path):
        raise ApiError(503, "syncing", syncing_message(progress), {"Retry-After": "10"})
    return await handler(request)
