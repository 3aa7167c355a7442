"""A small node on a real loopback socket that serves the light-client test chain (light_chain.py)
with real state proofs of a small state, and can be told to lie in one way at a time.

Only the routes the verifying client reads: `/status`, `/light/changes`, `/blocks/{h}/raw`,
`/blocks/{h}/commit`, `/state/proof` and the object proof routes (R38).
"""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from marketplace_tx.chain.block import Block, Header
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.state_keys import account_key, deadline_key, item_key, order_key, shop_key
from marketplace_tx.rules.state_tree import MemoryTree, prove_key, update_tree
from tests.unit.client.light_chain import (
    CHAIN_ID,
    TOP,
    build_chain,
    change_point_json,
    change_points,
    commit_json,
    genesis,
)

ALICE = KeyPair.from_seed(hashlib.sha256(b"light alice").digest()).address
"""An account with a balance and a nonce."""
SHOP_ID = hashlib.sha256(b"light shop").digest()
"""A shop of Alice's."""
ORDER_ID = hashlib.sha256(b"light order").digest()
"""An order Alice placed in the shop."""
ITEM_ID = "teapot-0001"
"""An item Alice owns."""
DEADLINE_KEY = deadline_key(5_000, ORDER_ID)
"""A `d` entry: its value is the empty byte string (R35)."""

STATE = {
    account_key(ALICE): codec.encode({"balance": 2_500_000, "nonce": 3}),
    shop_key(SHOP_ID): codec.encode({"name": "Tea House", "owner": ALICE}),
    order_key(ORDER_ID): codec.encode({"buyer": ALICE, "escrow": 1_000_000, "shop_id": SHOP_ID,
                                       "state": "placed"}),
    item_key(ITEM_ID): codec.encode({"custodian": ALICE, "owner": ALICE}),
    DEADLINE_KEY: b"",
}
"""The state after every block of the test chain."""


def _tree() -> tuple[MemoryTree, bytes]:
    tree = MemoryTree()
    update = update_tree(tree, STATE)
    tree.apply(update)
    return tree, update.root


TREE, ROOT = _tree()
CHAIN = build_chain(ROOT)
CHANGES = change_points(CHAIN)


@dataclass
class Lies:
    """What the node lies about (nothing by default)."""

    corrupt_proof: bool = False
    """Flip a byte of the deepest sibling (the node's own test switch does the same)."""
    skip_change: int | None = None
    """Leave out the change point at this index."""
    proof_height_offset: int = 0
    """Answer a proof of another height."""
    other_key: bytes | None = None
    """Answer the proof of this key instead."""
    stuck_cursor: bool = False
    """Answer every /light/changes page with no change points and the same `next`."""
    state_root: str | None = None
    """The `state_root` it sends along with proofs (never used by a client)."""
    padding: int = 0
    """Spaces appended to every JSON answer (valid JSON, just long)."""
    page_size: int = 1
    """Change points per page, whatever `limit` asks (1: the client must follow `next`)."""
    requests: list[str] = field(default_factory=list)
    """Every path asked, in order."""


def _proof(key: bytes, height: int, lies: Lies) -> dict[str, Any]:
    answered = lies.other_key or key
    proof = prove_key(TREE, answered, STATE.get(answered), height + lies.proof_height_offset).to_json()
    if lies.corrupt_proof:
        last = proof["siblings"][-1]
        proof["siblings"][-1] = f"{int(last[:2], 16) ^ 0xFF:02x}{last[2:]}"
    return {**proof, "state_root": lies.state_root or ROOT.hex()}


def _changes(query: dict[str, str], lies: Lies) -> dict[str, Any]:
    after = int(query.get("after", "0"))
    if lies.stuck_cursor:
        return {"changes": [], "next": after}
    listed = [change for index, change in enumerate(CHANGES) if index != lies.skip_change and change.height > after]
    page = listed[:lies.page_size]
    return {"changes": [change_point_json(change) for change in page],
            "next": page[-1].height if len(listed) > len(page) else None}


OBJECT_KEYS = {"accounts": account_key, "orders": order_key, "shops": shop_key}


def answer(path: str, lies: Lies) -> tuple[int, str, bytes]:
    """Status, content type and body of GET `path`."""
    parts = urllib.parse.urlsplit(path)
    query = dict(urllib.parse.parse_qsl(parts.query))
    segments = [urllib.parse.unquote(segment) for segment in parts.path.strip("/").split("/")]
    height = int(query.get("height", TOP))
    if segments == ["status"]:
        body: Any = {"chain_id": CHAIN_ID, "genesis_hash": genesis().hash.hex(), "height": TOP}
    elif segments == ["light", "changes"]:
        body = _changes(query, lies)
    elif segments[0] == "blocks" and segments[2:] == ["raw"]:
        header = Header.from_map(codec.decode(CHAIN[int(segments[1])].header))
        return 200, "application/msgpack", Block(header, (), None).encode()
    elif segments[0] == "blocks" and segments[2:] == ["commit"]:
        body = commit_json(CHAIN[int(segments[1])].commit)
    elif segments == ["state", "proof"]:
        body = _proof(bytes.fromhex(query["key"]), height, lies)
    elif segments[-1] == "proof" and segments[0] in OBJECT_KEYS:
        body = _proof(OBJECT_KEYS[segments[0]](bytes.fromhex(segments[1])), height, lies)
    elif segments[-1] == "proof" and segments[0] == "items":
        body = _proof(item_key(segments[1]), height, lies)
    else:
        return 404, "application/json", json.dumps({"error": {"code": "not_found", "message": path}}).encode()
    return 200, "application/json", json.dumps(body).encode() + b" " * lies.padding


@contextmanager
def light_node(lies: Lies | None = None) -> Iterator[tuple[str, Lies]]:
    """A running node on 127.0.0.1 (ephemeral port): its base URL and its (mutable) lies."""
    told = lies or Lies()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            told.requests.append(self.path)
            status, content_type, body = answer(self.path, told)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *arguments: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", told
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
