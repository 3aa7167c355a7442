"""Snapshots over HTTP (PROTOCOL R39): what this node offers, and its manifests and chunks.

- `GET /snapshots`: `{"snapshots": [{height, chunk_depth, chunks}, …]}`, newest first
  (empty when the node writes none: `[statesync] snapshot_interval = 0`).
- `GET /snapshots/{H}/manifest`: the canonical manifest bytes (`application/msgpack`).
- `GET /snapshots/{H}/chunks/{i}`: the canonical bytes of chunk i (`application/msgpack`).

A height or index that is not a decimal integer in range is 400 `invalid_query`; a snapshot
or chunk this node does not have is 404 `not_found` with a message. A manifest or chunk
costs `snapshot_bytes_cost` of its length (node/http/costs.py), known from the snapshot's
index before anything is read, and is charged BEFORE it is read; the file is read in a
worker thread, off the event loop. At most one chunk (≤ 1 MiB as written, never more than
R39's 4 MiB) is in memory per request.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from marketplace_tx.rules.snapshots import MAX_CHUNK_DEPTH
from node.http.costs import snapshot_bytes_cost
from node.http.errors import ApiError
from node.http.limits import charge
from node.http.params import HEIGHT_MAX, parse_integer
from node.http.services import SERVICES_KEY
from node.snapshot_store import SnapshotStore

MSGPACK = "application/msgpack"
"""The content type of manifests and chunks (canonical msgpack, R1)."""
MAX_CHUNK_INDEX = (1 << MAX_CHUNK_DEPTH) - 1
"""The highest chunk index any snapshot may have (d ≤ 16)."""


def _snapshots(request: web.Request) -> SnapshotStore | None:
    return request.app[SERVICES_KEY].snapshots


def _height(request: web.Request) -> int:
    return parse_integer(request.match_info["height"], "height", 1, HEIGHT_MAX)


def _missing(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


async def list_snapshots(request: web.Request) -> web.Response:
    """`GET /snapshots`: the snapshots this node serves, newest first (R39)."""
    snapshots = _snapshots(request)
    infos = [] if snapshots is None else await asyncio.to_thread(snapshots.list)
    return web.json_response({"snapshots": [info.to_map() for info in infos]})


async def get_manifest(request: web.Request) -> web.Response:
    """`GET /snapshots/{height}/manifest`: the canonical manifest bytes of snapshot `height`."""
    height = _height(request)
    snapshots = _snapshots(request)
    size = None if snapshots is None else snapshots.manifest_length(height)
    if snapshots is None or size is None:
        raise _missing(f"no snapshot at height {height} on this node (GET /snapshots lists them)")
    charge(request, snapshot_bytes_cost(size), f"a snapshot manifest of {size} bytes")
    raw = await asyncio.to_thread(snapshots.manifest_bytes, height)
    if raw is None:
        raise _missing(f"no snapshot at height {height} on this node (it was just deleted)")
    return web.Response(body=raw, content_type=MSGPACK)


async def get_chunk(request: web.Request) -> web.Response:
    """`GET /snapshots/{height}/chunks/{index}`: the canonical bytes of one chunk (R39)."""
    height = _height(request)
    index = parse_integer(request.match_info["index"], "index", 0, MAX_CHUNK_INDEX)
    snapshots = _snapshots(request)
    if snapshots is None or not snapshots.has(height):
        raise _missing(f"no snapshot at height {height} on this node (GET /snapshots lists them)")
    size = await asyncio.to_thread(snapshots.chunk_length, height, index)
    if size is None:
        raise _missing(f"snapshot {height} has no chunk {index}")
    charge(request, snapshot_bytes_cost(size), f"a snapshot chunk of {size} bytes")
    raw = await asyncio.to_thread(snapshots.chunk_bytes, height, index)
    if raw is None:
        raise _missing(f"snapshot {height} has no chunk {index} (it was just deleted)")
    return web.Response(body=raw, content_type=MSGPACK)


def add_snapshot_routes(app: web.Application) -> None:
    """Register `GET /snapshots`, `/snapshots/{height}/manifest`, `/snapshots/{height}/chunks/{index}`."""
    app.router.add_get("/snapshots", list_snapshots)
    app.router.add_get("/snapshots/{height}/manifest", get_manifest)
    app.router.add_get("/snapshots/{height}/chunks/{index}", get_chunk)
