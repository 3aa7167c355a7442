"""The HTTP API (PROTOCOL §10): status, transaction submission, blocks, proofs, accounts.

The marketplace read endpoints (shops, listings, orders, items, account histories)
live in node/http/marketplace.py, the state proofs, light-client change points and genesis
(R38) in node/http/state_proofs.py; `build_app` registers them. Handlers read the
narrow parts of the node they use from `request.app[SERVICES_KEY]` (node/http/services.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

from marketplace_tx.chain.block import Block
from marketplace_tx.chain.transaction import Transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.errors import AdmissionError, CodecError
from marketplace_tx.primitives.merkle import inclusion_path
from marketplace_tx.rules.accounts import load_account, role_record, roles_of
from marketplace_tx.rules.state import State
from marketplace_tx.rules.state_keys import PUNISHED, VALIDATOR_VOTES
from marketplace_tx.rules.validators import proposer_for, scheduled_changes, set_at, validators_hash
from node.http.costs import MAX_LIST_TX_IDS, body_cost, rows_cost, transactions_cost, tx_ids_cost
from node.http.errors import MAX_BODY_KEY, ApiError, error_middleware, found, pruned
from node.http.events import add_event_routes
from node.http.json_view import to_json
from node.http.limits import LIMITS_KEY, RequestLimits, charge, limits_middleware
from node.http.marketplace import account_marketplace_view, add_marketplace_routes
from node.http.metrics import METRICS_KEY, get_metrics, metrics_middleware
from node.http.openapi import MSGPACK_MEDIA_TYPES, check_routes, get_openapi
from node.http.params import HEIGHT_MAX, page_limit, path_height, path_hex32, query_integer
from node.http.services import SERVICES_KEY, HttpServices, NodeRuntime
from node.http.snapshots import add_snapshot_routes
from node.http.state_proofs import add_state_proof_routes
from node.http.state_sync_gate import state_sync_gate
from node.pruning import history_is_partial, is_pruned_height, kept_blocks_message
from node.storage import TxLocation

STATIC_DIRECTORY = Path(__file__).resolve().parent / "static"
TX_HASH_ROUTE = "/txs/{hash:(?!batch$)[^{}/]+}"
"""`/txs/{hash}`, except `/txs/batch`: that path is the batch route's alone, so a GET there is
405 with `Allow: POST` rather than a lookup of a transaction named `batch`."""


def _services(request: web.Request) -> HttpServices:
    return request.app[SERVICES_KEY]


# --- status -------------------------------------------------------------------------


async def get_status(request: web.Request) -> web.Response:
    """`GET /status`."""
    services = _services(request)
    runtime = services.runtime
    validator = runtime.validator_address()
    consensus = runtime.consensus.state
    tip = services.store.head()
    assert tip is not None
    return web.json_response(
        {
            "chain_id": services.genesis.chain_id,
            "genesis_hash": services.genesis.hash.hex(),
            "height": tip.height,
            "latest_block_hash": tip.block_hash.hex() if tip.height else None,
            "latest_block_time": tip.time if tip.height else None,
            "state_root": tip.state_root.hex(),
            "node_id": runtime.identity.node_id.hex(),
            "moniker": runtime.identity.moniker,
            "validator": validator.hex() if validator else None,
            "peers": len(runtime.peers.peers()),
            **_sync_fields(runtime),
            "consensus": {"height": consensus.height, "round": consensus.round,
                          "step": str(consensus.step), "started": consensus.started},
            "p2p": f"{runtime.identity.p2p_host}:{runtime.peers.listen_port}",
            "mempool_size": len(services.mempool),
            "min_fee": services.genesis.params.min_fee,
            "params": services.genesis.params.to_map(),
            "version": runtime.identity.version,
        }
    )


def _sync_fields(runtime: NodeRuntime) -> dict[str, Any]:
    """`syncing` (a boolean, or "state" while a snapshot is restored, R39) and the progress."""
    state_sync = runtime.state_sync()
    if state_sync is not None:
        return {"syncing": "state", "chunks": state_sync["chunks"], "sync": runtime.sync.progress(),
                "state_sync": state_sync}
    return {"syncing": runtime.sync.syncing, "sync": runtime.sync.progress()}


# --- transactions -------------------------------------------------------------------


async def _read_body(request: web.Request) -> bytes:
    """The request body, its bytes charged first (from `Content-Length`), read within
    `[http] body_timeout_s` (else 408 `request_timeout` and the connection is closed)."""
    declared = request.content_length
    if declared is not None and declared <= request.app[MAX_BODY_KEY]:
        charge(request, body_cost(declared), f"a body of {declared} bytes")
    timeout_s = _services(request).limits.body_timeout_s
    try:
        body = await asyncio.wait_for(request.read(), timeout_s)
    except TimeoutError:
        raise ApiError(408, "request_timeout", f"the body was not sent within {timeout_s} s") from None
    if declared is None:
        charge(request, body_cost(len(body)), f"a body of {len(body)} bytes")
    return body


async def _body_transactions(request: web.Request, batch: bool) -> list[bytes]:
    content_type = request.content_type
    body = await _read_body(request)
    if content_type in MSGPACK_MEDIA_TYPES:
        if not batch:
            return [body]
        try:
            items = codec.decode(body)
        except CodecError as error:
            raise ApiError(400, "malformed", f"body: {error.message}") from None
        if not isinstance(items, list) or not all(isinstance(item, bytes) for item in items):
            raise ApiError(400, "malformed", "body must be a msgpack array of bin")
        return items
    if content_type == "application/json":
        try:
            value = json.loads(body)
        except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError, int limits
            raise ApiError(400, "malformed", f"body is not valid JSON: {str(error)[:200]}") from None
        key = "txs" if batch else "tx"
        if not isinstance(value, dict) or key not in value:
            raise ApiError(400, "malformed", f'body must be {{"{key}": ...}}')
        items = value[key] if batch else [value[key]]
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise ApiError(400, "malformed", f"{key} must hold hex strings")
        decoded = []
        for position, item in enumerate(items):
            try:
                decoded.append(bytes.fromhex(item))
            except ValueError:
                raise ApiError(400, "malformed", f"{key}[{position}] is not hex") from None
        return decoded
    raise ApiError(
        415, "unsupported_media_type", "send application/msgpack or application/json"
    )


async def post_tx(request: web.Request) -> web.Response:
    """`POST /txs`: admit one transaction; 202 `{"hash"}` or 400 with its R12 code."""
    services = _services(request)
    (raw,) = await _body_transactions(request, batch=False)
    charge(request, transactions_cost(1), "a transaction")
    (outcome,) = await services.submitter.submit_many([raw])
    if isinstance(outcome, AdmissionError):
        raise outcome
    return web.json_response({"hash": outcome.hash.hex()}, status=202)


async def post_tx_batch(request: web.Request) -> web.Response:
    """`POST /txs/batch`: per transaction `{"hash"}` or `{"error"}`, in order.

    Stateless checks and signatures run in the node's thread pool, off the event loop."""
    services = _services(request)
    items = await _body_transactions(request, batch=True)
    limit = services.limits.max_batch_txs
    if len(items) > limit:
        raise ApiError(400, "malformed", f"a batch holds at most {limit} transactions")
    charge(request, transactions_cost(len(items)), f"a batch of {len(items)} transactions")
    results: list[dict[str, Any]] = []
    for outcome in await services.submitter.submit_many(items):
        if isinstance(outcome, AdmissionError):
            results.append({"error": {"code": outcome.code, "message": outcome.message}})
        else:
            results.append({"hash": outcome.hash.hex()})
    return web.json_response({"results": results})


def tx_view(tx: Transaction) -> dict[str, Any]:
    """The JSON fields of a signed transaction."""
    return {
        "hash": tx.hash.hex(),
        "type": tx.type,
        "sender": tx.sender.hex(),
        "nonce": tx.nonce,
        "fee": tx.fee,
        "chain_id": tx.chain_id,
        "payload": to_json(tx.payload),
        "sig": tx.sig.hex(),
    }


async def get_tx(request: web.Request) -> web.Response:
    """`GET /txs/{hash}`: a pending or committed transaction with its result."""
    services = _services(request)
    tx_hash = path_hex32(request, "hash")
    pending = services.mempool.get(tx_hash)
    if pending is not None:
        return web.json_response({**tx_view(pending), "status": "pending"})
    location = found(_tx_location(services, tx_hash), f"transaction {tx_hash.hex()}")
    block = _block_at(services, location.height)
    tx = services.decode_committed(block.txs[location.index])
    receipts = services.store.receipts(location.height)
    if location.index >= len(receipts):  # pruned since the block was read (R40)
        _not_kept(services, location.height, "block")
        raise ApiError(404, "not_found", f"no receipt of transaction {tx_hash.hex()}")
    receipt = receipts[location.index]
    return web.json_response(
        {
            **tx_view(tx),
            "status": "committed",
            "height": location.height,
            "index": location.index,
            "block_hash": block.hash.hex(),
            "time": block.header.time,
            "result": to_json(receipt.to_map()),
        }
    )


async def get_tx_proof(request: web.Request) -> web.Response:
    """`GET /txs/{hash}/proof`: the Merkle path of a committed transaction to its block's tx_root."""
    services = _services(request)
    tx_hash = path_hex32(request, "hash")
    location = found(_tx_location(services, tx_hash), f"committed transaction {tx_hash.hex()}")
    block = _block_at(services, location.height)
    charge(request, tx_ids_cost(len(block.txs)), f"a proof in a block of {len(block.txs)} transactions")
    hashes = [services.hash_of(raw) for raw in block.txs]
    return web.json_response(
        {
            "hash": tx_hash.hex(),
            "height": location.height,
            "index": location.index,
            "total": len(hashes),
            "tx_root": block.header.tx_root.hex(),
            "block_hash": block.hash.hex(),
            "path": [item.hex() for item in inclusion_path(hashes, location.index)],
        }
    )


def _tx_location(services: HttpServices, tx_hash: bytes) -> TxLocation | None:
    """Where a committed transaction is; 410 `pruned` if it is not found on a node that lacks
    old blocks (pruned or state-synced, R40): it may be in one of them, the node cannot tell."""
    location = services.store.tx_location(tx_hash)
    if location is None and history_is_partial(services.store):
        raise pruned(f"transaction {tx_hash.hex()} is not known here and may be in an older block: "
                     f"{kept_blocks_message(services.store)}")
    return location


# --- blocks -------------------------------------------------------------------------


def block_view(services: HttpServices, block: Block) -> dict[str, Any]:
    """Header, transaction hashes, the last commit and this block's own commit."""
    height = block.header.height
    commit = services.store.commit(height)
    return {
        "hash": block.hash.hex(),
        "height": height,
        "header": to_json(block.header.to_map()),
        "txs": [services.hash_of(raw).hex() for raw in block.txs],
        "tx_count": len(block.txs),
        "last_commit": to_json(block.last_commit.to_map()) if block.last_commit else {},
        "evidence": to_json(list(block.evidence)),
        "commit": to_json(commit.to_map()) if commit else None,
    }


def _block_at(services: HttpServices, height: int) -> Block:
    return found(services.store.block(height) or _not_kept(services, height, "block"), f"block at height {height}")


def _not_kept(services: HttpServices, height: int, what: str) -> None:
    """Raise 410 `pruned` if block `height` is older than this node keeps (R40); else return."""
    if is_pruned_height(services.store, height):
        raise pruned(f"the {what} of height {height} is not kept: {kept_blocks_message(services.store)}")


def _charged_view(request: web.Request, block: Block) -> dict[str, Any]:
    charge(request, tx_ids_cost(len(block.txs)), f"a block of {len(block.txs)} transactions")
    return block_view(_services(request), block)


async def get_latest_block(request: web.Request) -> web.Response:
    """`GET /blocks/latest`."""
    services = _services(request)
    tip = services.store.head()
    assert tip is not None
    if tip.height == 0:
        raise ApiError(404, "not_found", "no block has been made yet")
    return web.json_response(_charged_view(request, _block_at(services, tip.height)))


async def get_block(request: web.Request) -> web.Response:
    """`GET /blocks/{height}`."""
    services = _services(request)
    return web.json_response(_charged_view(request, _block_at(services, path_height(request))))


async def get_block_raw(request: web.Request) -> web.Response:
    """`GET /blocks/{height}/raw`: canonical block bytes."""
    services = _services(request)
    height = path_height(request)
    raw = found(services.store.block_bytes(height) or _not_kept(services, height, "block"), f"block at height {height}")
    return web.Response(body=raw, content_type="application/msgpack")


async def get_block_commit(request: web.Request) -> web.Response:
    """`GET /blocks/{height}/commit`: the precommits that finalized the block."""
    services = _services(request)
    height = path_height(request)
    commit = found(services.store.commit(height) or _not_kept(services, height, "commit"), f"commit for height {height}")
    return web.json_response(to_json(commit.to_map()))


async def list_blocks(request: web.Request) -> web.Response:
    """`GET /blocks?before=&limit=`: newest first; `next` is the cursor for the next page.

    A page embeds at most `MAX_LIST_TX_IDS` transaction ids: it ends before the block that
    would pass them (it always holds one block), and `next` continues from there. On a node
    that lacks old blocks (R40) the list stops at the oldest kept one and says so with
    `pruned_below`; a `before` page entirely below it is 410 `pruned`."""
    services = _services(request)
    tip = services.store.head()
    assert tip is not None
    before = query_integer(request, "before", tip.height + 1, 1, HEIGHT_MAX)
    limit = page_limit(request)
    charge(request, rows_cost(limit), f"a page of {limit} blocks")
    top = min(before - 1, tip.height)
    oldest = services.store.oldest_block_height()
    if top >= 1 and "before" in request.query:  # the newest page is never 410: it may be empty (state sync)
        _not_kept(services, top, "block")
    heights = range(top, max(top - limit, oldest - 1), -1)
    page = blocks_within(_kept_blocks(services, heights), MAX_LIST_TX_IDS)
    tx_ids = sum(len(block.txs) for block in page)
    charge(request, tx_ids_cost(tx_ids), f"a page of blocks with {tx_ids} transactions")
    lowest = page[-1].header.height if page else 1
    body: dict[str, Any] = {"blocks": [block_view(services, block) for block in page],
                            "next": lowest if lowest > oldest else None}
    if oldest > 1 and lowest <= oldest:
        body["pruned_below"] = oldest
    return web.json_response(body)


def _kept_blocks(services: HttpServices, heights: Iterable[int]) -> Iterator[Block]:
    """The blocks at `heights`, read lazily, until one is missing (pruned meanwhile)."""
    for height in heights:
        block = services.store.block(height)
        if block is None:
            return
        yield block


def blocks_within(blocks: Iterable[Block], max_tx_ids: int) -> list[Block]:
    """The first of `blocks` (read lazily) whose transactions number at most `max_tx_ids`
    together; always the first block, whatever it holds."""
    page: list[Block] = []
    tx_ids = 0
    for block in blocks:
        if page and tx_ids + len(block.txs) > max_tx_ids:
            break
        tx_ids += len(block.txs)
        page.append(block)
    return page


# --- accounts -----------------------------------------------------------------------


async def get_account(request: web.Request) -> web.Response:
    """`GET /accounts/{address}`: balance, nonce, roles, points per shop, and the merchant
    reputation of an address that owns a shop or holds `merchant` (else null); zeros
    for an unseen address."""
    services = _services(request)
    address = path_hex32(request, "address")
    with services.store.read_view() as view:
        state = State(view)
        account = load_account(state, address)
        roles = roles_of(state, address)
        grants = {role: to_json(role_record(state, address, role)) for role in roles}
        marketplace = account_marketplace_view(state, view, address)
    return web.json_response(
        {
            "id": address.hex(),
            "address": address.hex(),
            "balance": account.balance,
            "nonce": account.nonce,
            "pending_nonce": services.mempool.pending_nonce(address, account.nonce),
            "roles": roles,
            "role_grants": grants,
            **marketplace,
        }
    )


async def get_validators(request: web.Request) -> web.Response:
    """`GET /validators?height=`: the set that signs a height (default: the next block),
    changes decided but not yet in force, pending `validator_vote`s and punished
    validators (R25, R27, R34)."""
    services = _services(request)
    tip = services.store.head()
    assert tip is not None
    height = query_integer(request, "height", tip.height + 1, 1, tip.height + 1)
    state = State(services.store)
    validators = set_at(state, height)
    proposer = proposer_for(validators, height, 0) if validators else None
    pending = []
    for key, value in state.scan(VALIDATOR_VOTES, VALIDATOR_VOTES + b"\xff"):
        action, _, validator = key[len(VALIDATOR_VOTES):].partition(b"\x00")
        pending.append({"action": action.decode(), "validator": validator.hex(),
                        "voters": [voter.hex() for voter in codec.decode(value)["voters"]]})
    punished = [
        {"validator": key[len(PUNISHED):].hex(), **codec.decode(value)}
        for key, value in state.scan(PUNISHED, PUNISHED + b"\xff")
    ]
    return web.json_response(
        {
            "height": height,
            "validators": [{"address": address.hex()} for address in validators],
            "validators_hash": validators_hash(validators).hex(),
            "proposer": proposer.hex() if proposer else None,
            "scheduled": [
                {"height": change_height, "validators": [address.hex() for address in change]}
                for change_height, change in scheduled_changes(state)
            ],
            "pending_votes": pending,
            "evidence": punished,
        }
    )


EXPLORER_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
"""The explorer loads nothing from elsewhere (it must work offline) and runs no inline script."""
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
"""The explorer's static files: served only with one of these extensions."""


async def get_explorer(request: web.Request) -> web.FileResponse:
    """`GET /`: the block explorer page."""
    return web.FileResponse(STATIC_DIRECTORY / "index.html", headers=EXPLORER_HEADERS)


async def get_static(request: web.Request) -> web.FileResponse:
    """`GET /static/{name}`: a script, style sheet or image of the explorer (node/http/static/)."""
    name = request.match_info["name"]
    content_type = STATIC_TYPES.get(Path(name).suffix)
    path = STATIC_DIRECTORY / name
    if content_type is None or "/" in name or name.startswith(".") or not path.is_file():
        raise ApiError(404, "not_found", f"no static file {name}")
    return web.FileResponse(path, headers={**EXPLORER_HEADERS, "Content-Type": content_type})


def build_app(services: HttpServices) -> web.Application:
    """The aiohttp application of the API; it serves exactly the routes node/http/openapi.py documents."""
    limits = RequestLimits(services.limits)
    app = web.Application(
        middlewares=[metrics_middleware, limits_middleware(limits), error_middleware, state_sync_gate],
        client_max_size=services.limits.max_body_bytes,
    )
    app[SERVICES_KEY] = services
    app[LIMITS_KEY] = limits
    app[METRICS_KEY] = services.metrics
    app[MAX_BODY_KEY] = services.limits.max_body_bytes
    app.router.add_get("/status", get_status)
    app.router.add_post("/txs", post_tx)
    app.router.add_post("/txs/batch", post_tx_batch)
    app.router.add_get(TX_HASH_ROUTE, get_tx)
    app.router.add_get("/txs/{hash}/proof", get_tx_proof)
    app.router.add_get("/blocks", list_blocks)
    app.router.add_get("/blocks/latest", get_latest_block)
    app.router.add_get("/blocks/{height}", get_block)
    app.router.add_get("/blocks/{height}/raw", get_block_raw)
    app.router.add_get("/blocks/{height}/commit", get_block_commit)
    app.router.add_get("/accounts/{address}", get_account)
    app.router.add_get("/validators", get_validators)
    add_marketplace_routes(app)
    add_state_proof_routes(app)
    add_snapshot_routes(app)
    add_event_routes(app, services)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/openapi.json", get_openapi)
    app.router.add_get("/", get_explorer)
    app.router.add_get("/static/{name}", get_static)
    check_routes(app)
    return app
