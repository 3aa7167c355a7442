"""State proofs and light-client change points over HTTP (PROTOCOL R36, R37, R38).

- `GET /state/proof?key=HEX[&height=H]` and the object routes `/accounts/{a}/proof`,
  `/orders/{id}/proof`, `/shops/{id}/proof`, `/listings/{id}/proof`, `/items/{id}/proof`
  (the key of R35's table: family tag ‖ id, `marketplace_tx.rules.state_keys`) answer 200
  with the R36 proof `{height, key, value, leaf, siblings}` plus the `state_root` of header
  `height`, for inclusion and absence alike. The root is there for convenience only: a
  client checks the proof against a header it verified itself (R37), never against it.
- `GET /light/changes?after=H&limit=N`: the validator-set change points (R37) above
  height `after`, oldest first, with the cursor `next`.
- `GET /genesis`: the genesis document as the node read it (R33), so that a browser can
  take the first validator set from it once it checked its hash against the one it pins.

Errors: a parameter that does not parse (bad hex, a key over `MAX_KEY_BYTES`, a height
that is not a decimal integer) is 400 `invalid_query` like every parameter of the API
(node/http/params.py); a height above the chain's head is 404 `not_found`; a height older
than the node keeps (`[storage] keep_state`, R40) is 410 `pruned`.

Costs (node/http/costs.py), charged before the work: a proof costs `state_proof_cost` of
how many heights back it reaches, and an old-height proof then `changed_keys_cost` of the
keys changed since (the node rebuilds the old version from the undo record of every block
since: node/state_history.py), counted before the rebuild; `/light/changes` costs its
`limit` in rows. The proofs and the
change points are read in a worker thread (one LevelDB snapshot each), off the event loop.

Test-only: with the environment variable `MARKETCHAIN_TEST_CORRUPT_PROOFS=1` when the
node starts, it flips one byte of every proof it serves (`corrupt_proof`) and logs a
warning. It exists so that tests can check that clients reject a lying node; it must
never be set on a real node.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from marketplace_tx.rules.state_keys import account_key, item_key, listing_key, order_key, shop_key
from node.http.costs import changed_keys_cost, rows_cost, state_proof_cost
from node.http.errors import ApiError
from node.http.json_view import to_json
from node.http.limits import charge
from node.http.params import (
    HEIGHT_MAX,
    HEX_DIGITS,
    invalid,
    parse_integer,
    path_hex32,
    path_item_id,
    query_integer,
    query_text,
)
from node.http.services import SERVICES_KEY, HttpServices
from node.state_history import (
    ChangePoint,
    ProofUnavailable,
    change_points,
    changed_key_count,
    oldest_provable_height,
    prove_state,
)

log = logging.getLogger("marketchain.http")

MAX_KEY_BYTES = 1024
"""Longest state key `GET /state/proof` takes (R35's keys are at most 1 + 64 + 1 + 4 bytes)."""
DEFAULT_CHANGES = 100
"""Change points in a `/light/changes` page when `limit` is not given."""
MAX_CHANGES = 1000
"""Most change points one `/light/changes` page returns (R37)."""
CORRUPT_PROOFS_VARIABLE = "MARKETCHAIN_TEST_CORRUPT_PROOFS"
"""Environment variable of the test-only lying switch: `1` makes the node corrupt every proof."""
CORRUPT_PROOFS_KEY = web.AppKey("corrupt_proofs", bool)
"""Application key: True when the lying switch was on at start-up."""
UNAVAILABLE_STATUS = {"pruned": 410, "not_found": 404}
"""HTTP status of each `ProofUnavailable.code`."""


def _services(request: web.Request) -> HttpServices:
    return request.app[SERVICES_KEY]


# --- parameters ---------------------------------------------------------------------------


def parse_state_key(text: str | None, name: str = "key") -> bytes:
    """A state key given as hex: 1..`MAX_KEY_BYTES` bytes, either case; else 400 `invalid_query`."""
    if text is None:
        raise invalid(name, "is required (the state key in hex)")
    if len(text) % 2 or not HEX_DIGITS.issuperset(text):
        raise invalid(name, "must be hex (an even number of hex digits)")
    if len(text) > 2 * MAX_KEY_BYTES:
        raise invalid(name, f"must be at most {MAX_KEY_BYTES} bytes")
    return bytes.fromhex(text)


def proof_height(request: web.Request) -> int | None:
    """The optional `height` of a proof: a decimal integer 0..`HEIGHT_MAX`; None = the latest."""
    text = query_text(request, "height")
    return None if text is None else parse_integer(text, "height", 0, HEIGHT_MAX)


# --- the lying switch (tests only) ------------------------------------------------------------


def _flip_first_byte(hex_text: str) -> str:
    return f"{int(hex_text[:2], 16) ^ 0xFF:02x}{hex_text[2:]}"


def corrupt_proof(proof: Mapping[str, Any]) -> dict[str, Any]:
    """`proof` (R38 JSON) with one byte changed, so that it no longer folds to its root (R36):
    the first byte of the deepest sibling; without siblings, of the value (an empty value
    becomes `00`); without a value either, of the occupying leaf's value hash; with none of
    them (an empty tree), a value `00` is claimed. Only for the test-only lying switch."""
    corrupted = dict(proof)
    if proof["siblings"]:
        corrupted["siblings"] = [*proof["siblings"][:-1], _flip_first_byte(proof["siblings"][-1])]
    elif proof["value"]:
        corrupted["value"] = _flip_first_byte(proof["value"])
    elif proof["value"] is None and proof["leaf"] is not None:
        corrupted["leaf"] = {**proof["leaf"], "value_hash": _flip_first_byte(proof["leaf"]["value_hash"])}
    else:
        corrupted["value"] = "00"
    return corrupted


def corrupt_proofs_switch(environment: Mapping[str, str]) -> bool:
    """Whether the test-only lying switch is on in `environment` (exactly `1`); logs a loud
    warning when it is."""
    if environment.get(CORRUPT_PROOFS_VARIABLE) != "1":
        return False
    log.warning("%s=1: this node serves CORRUPTED state proofs (a test-only switch); "
                "never set it on a real node", CORRUPT_PROOFS_VARIABLE)
    return True


# --- proofs -------------------------------------------------------------------------------------


async def _charge_proof(request: web.Request, services: HttpServices, height: int | None) -> None:
    """Charge a proof at `height` (None: the head) before it is built: its heights back, then
    (once the undo records are counted) the keys changed since. A height above the head or
    older than kept is charged as a proof at the head (it is answered 404 or 410)."""
    tip = services.store.head()
    assert tip is not None
    if height is None or not oldest_provable_height(services.store) <= height < tip.height:
        charge(request, state_proof_cost(0), "a state proof")
        return
    heights_back = tip.height - height
    charge(request, state_proof_cost(heights_back), f"a state proof {heights_back} heights back")
    changed = await asyncio.to_thread(changed_key_count, services.store, height, tip.height)
    charge(request, changed_keys_cost(changed),
           f"rebuilding the state of {heights_back} heights back ({changed} changed keys)")


def compact_json(value: Any) -> str:
    """JSON without the spaces after separators: a proof is mostly hex siblings, one per
    level of the key's path, and every byte counts toward its size (issue 14: ≤ 2 KB)."""
    return json.dumps(value, separators=(",", ":"))


async def serve_proof(request: web.Request, key: bytes) -> web.Response:
    """The R38 answer for `key` at the request's `height` (default: the latest): the R36 proof
    and the header's `state_root`. Charged by how far back it reaches, before it is built."""
    services = _services(request)
    height = proof_height(request)
    try:
        await _charge_proof(request, services, height)
        proof, state_root = await asyncio.to_thread(prove_state, services.store, key, height)
    except ProofUnavailable as error:
        raise ApiError(UNAVAILABLE_STATUS.get(error.code, 404), error.code, str(error)) from None
    body = {**proof.to_json(), "state_root": state_root.hex()}
    if request.app[CORRUPT_PROOFS_KEY]:
        body = corrupt_proof(body)
    return web.json_response(body, dumps=compact_json)


async def get_state_proof(request: web.Request) -> web.Response:
    """`GET /state/proof?key=HEX&height=H`: the R36 proof of any state key (R38)."""
    return await serve_proof(request, parse_state_key(query_text(request, "key")))


def _object_proof(key_of: Callable[[web.Request], bytes]) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        return await serve_proof(request, key_of(request))

    return handler


get_account_proof = _object_proof(lambda request: account_key(path_hex32(request, "address")))
"""`GET /accounts/{address}/proof`: the proof of `a ‖ address` (balance and nonce; R35, R38)."""
get_order_proof = _object_proof(lambda request: order_key(path_hex32(request, "id")))
"""`GET /orders/{id}/proof`: the proof of `o ‖ order_id` (R38)."""
get_shop_proof = _object_proof(lambda request: shop_key(path_hex32(request, "id")))
"""`GET /shops/{id}/proof`: the proof of `s ‖ shop_id` (R38)."""
get_listing_proof = _object_proof(lambda request: listing_key(path_hex32(request, "id")))
"""`GET /listings/{id}/proof`: the proof of `l ‖ listing_id` (R38)."""
get_item_proof = _object_proof(lambda request: item_key(path_item_id(request)))
"""`GET /items/{id}/proof`: the proof of `i ‖ item_id` (UTF-8; R38)."""


# --- light client -------------------------------------------------------------------------------


def change_point_view(point: ChangePoint) -> dict[str, Any]:
    """`{height, header: hex, commit: as /blocks/{h}/commit, next_validators: [hex]}` (R38)."""
    return {
        "height": point.height,
        "header": point.header.hex(),
        "commit": to_json(point.commit.to_map()),
        "next_validators": [address.hex() for address in point.next_validators],
    }


async def get_light_changes(request: web.Request) -> web.Response:
    """`GET /light/changes?after=H&limit=N`: validator-set change points above `after`, oldest
    first (R37, R38); `next` is the `after` of the next page, null on the last."""
    services = _services(request)
    after = query_integer(request, "after", 0, 0, HEIGHT_MAX)
    limit = query_integer(request, "limit", DEFAULT_CHANGES, 1, MAX_CHANGES)
    charge(request, rows_cost(limit), f"a page of {limit} change points")
    points, next_after = await asyncio.to_thread(change_points, services.store, after, limit)
    return web.json_response({"changes": [change_point_view(point) for point in points], "next": next_after})


async def get_genesis(request: web.Request) -> web.Response:
    """`GET /genesis`: the genesis document (R33) as JSON; its hash is `/status` `genesis_hash`."""
    return web.json_response(_services(request).genesis.to_json())


def add_state_proof_routes(app: web.Application, environment: Mapping[str, str] = os.environ) -> None:
    """Register the proof, change-point and genesis routes, and read the test-only lying
    switch from `environment` once (handlers read `app[SERVICES_KEY]`)."""
    app[CORRUPT_PROOFS_KEY] = corrupt_proofs_switch(environment)
    app.router.add_get("/state/proof", get_state_proof)
    app.router.add_get("/accounts/{address}/proof", get_account_proof)
    app.router.add_get("/orders/{id}/proof", get_order_proof)
    app.router.add_get("/shops/{id}/proof", get_shop_proof)
    app.router.add_get("/listings/{id}/proof", get_listing_proof)
    app.router.add_get("/items/{id}/proof", get_item_proof)
    app.router.add_get("/light/changes", get_light_changes)
    app.router.add_get("/genesis", get_genesis)
