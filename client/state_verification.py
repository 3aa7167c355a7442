"""Verified reads of the state over HTTP: `marketchain verify account|order|state|shop|listing|item`.

The order of PROTOCOL R38: fetch the R36 proof of the key at height H; verify header H by
R37 from the genesis file (the change points of `/light/changes`, then `/blocks/{H}/raw`
hashed locally and `/blocks/{H}/commit`); then fold the proof (R36) and compare it with
that header's `state_root`, never with the root the node sends along. Nothing the node
says is believed unless it checks; every failure is a `StateVerificationFailed` naming the
rule and the step.

The change points are verified page by page as they arrive (one page of at most
`CHANGES_PAGE` in memory), and each page must advance past the cursor, so a hostile node
can make the client do at most one commit check per height below the target.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

from client.light_client import (
    LightClientError,
    TrustedSet,
    VerifiedHeader,
    advance,
    change_point_from_json,
    commit_from_json,
    genesis_set,
    verify_target,
)
from client.node_client import NodeClient
from marketplace_tx.chain.block import decode_block
from marketplace_tx.chain.genesis import Genesis
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.errors import CodecError, InvalidBlock
from marketplace_tx.primitives.sparse_merkle import InvalidProof, StateProof, verify_state_proof
from marketplace_tx.rules.state_keys import account_key, item_key, listing_key, order_key, shop_key

CHANGES_PAGE = 1000
"""Change points asked for per `/light/changes` page (the node's maximum, R38)."""


class StateVerificationFailed(Exception):
    """A proof, header, commit or change point that did not verify; the message names the rule and step."""


@dataclass(frozen=True)
class VerifiedState:
    """The value of one state key, proven (R36) against a header verified from genesis (R37)."""

    key: bytes
    """The state key (R35)."""
    value: bytes | None
    """Its value after block `header.height`; None when the proof shows the key absent."""
    header: VerifiedHeader
    """The header whose `state_root` the proof folded to."""
    change_points: int
    """How many validator-set changes were verified on the way from genesis."""

    @property
    def height(self) -> int:
        """The height of the verified header."""
        return self.header.height

    def decoded(self) -> Any:
        """The value as canonical msgpack decoded (bytes stay bytes); None when absent.

        A `d` entry's empty value decodes to b"" (it is not msgpack, R35).
        """
        if self.value is None:
            return None
        if self.value == b"":
            return b""
        try:
            return codec.decode(self.value)
        except CodecError:
            return self.value


def _check_chain(client: NodeClient, genesis: Genesis) -> int:
    """The node's latest height, after a first cheap check that it serves the genesis' chain.

    Only a courtesy for a clear message: every header is still checked by R37.
    """
    status = client.status()
    if not isinstance(status, dict) or not isinstance(status.get("height"), int):
        raise StateVerificationFailed("the node's /status has no height")
    if status.get("chain_id") != genesis.chain_id:
        raise StateVerificationFailed(f"the node serves chain {status.get('chain_id')!r}, the genesis file is of "
                                      f"chain {genesis.chain_id!r}: pass the genesis of the node's chain")
    if status.get("genesis_hash") not in (None, genesis.hash.hex()):
        raise StateVerificationFailed("the node's genesis hash differs from the genesis file's: it serves another "
                                      "chain of the same chain_id")
    return status["height"]


def trusted_set_below(client: NodeClient, genesis: Genesis, height: int) -> tuple[TrustedSet, int]:
    """S of R37 for `height`: the genesis set advanced through every change point below it.

    Returns the set and how many change points it went through. Pages of `/light/changes`
    are verified as they arrive; change points at or above `height` end the walk.
    """
    trusted, after, count = genesis_set(genesis), 0, 0
    while True:
        page = client.get(f"/light/changes?after={after}&limit={CHANGES_PAGE}")
        if not isinstance(page, dict) or not isinstance(page.get("changes"), list):
            raise LightClientError("change points", "the /light/changes answer is not {changes, next}")
        for item in page["changes"]:
            change = change_point_from_json(item)
            if change.height <= after:
                raise LightClientError("change points", f"the node listed height {change.height} after the "
                                                        f"cursor {after}")
            if change.height >= height:
                return trusted, count
            trusted = advance(trusted, genesis.chain_id, change)
            after, count = change.height, count + 1
        cursor = page.get("next")
        if cursor is None:
            return trusted, count
        if isinstance(cursor, bool) or not isinstance(cursor, int) or cursor < after or not page["changes"]:
            raise LightClientError("change points", f"the /light/changes cursor {cursor!r} does not advance")
        after = cursor


def fetch_verified_header(client: NodeClient, genesis: Genesis, height: int) -> tuple[VerifiedHeader, int]:
    """Header `height` verified by R37 from `genesis`, and the number of change points used."""
    trusted, count = trusted_set_below(client, genesis, height)
    raw = client.get(f"/blocks/{height}/raw")
    if not isinstance(raw, bytes):
        raise StateVerificationFailed(f"/blocks/{height}/raw did not answer canonical bytes")
    try:
        block = decode_block(raw, len(raw))
    except InvalidBlock as error:
        raise StateVerificationFailed(f"block {height} does not decode: {error.message}") from None
    try:
        commit = commit_from_json(client.get(f"/blocks/{height}/commit"))
    except ValueError as error:
        raise LightClientError(f"target header at height {height}", f"malformed commit: {error}") from None
    header_bytes = codec.encode(block.header.to_map())
    return verify_target(trusted, genesis.chain_id, header_bytes, commit, height), count


def verify_key(client: NodeClient, genesis: Genesis, key: bytes, height: int | None = None,
               route: str | None = None) -> VerifiedState:
    """The value of state key `key` at `height` (default: the node's latest), proven from `genesis`.

    `route` is the object's proof route (e.g. `/accounts/{a}/proof`); default `/state/proof?key=`.
    Raises `StateVerificationFailed` (R36/R37 failures included) or `ClientError` (the node's own errors).
    """
    latest = _check_chain(client, genesis)
    if height is None:
        height = latest
    if height < 1:
        raise StateVerificationFailed("the chain has no block yet: there is no header to verify against")
    path = route or f"/state/proof?key={key.hex()}"
    answer = client.get(f"{path}{'&' if '?' in path else '?'}height={height}")
    try:
        proof = StateProof.from_json(answer)
        if proof.key != key or proof.height != height:
            raise InvalidProof(f"the node answered for key {proof.key.hex()} at height {proof.height}, not the "
                               f"asked key {key.hex()} at height {height}")
        header, count = fetch_verified_header(client, genesis, height)
        verify_state_proof(proof, key, height, header.header.state_root)
    except LightClientError as error:
        raise StateVerificationFailed(str(error)) from None
    except InvalidProof as error:
        raise StateVerificationFailed(f"R36, state proof: {error}") from None
    return VerifiedState(key, proof.value, header, count)


def verify_state_key(client: NodeClient, genesis: Genesis, key: bytes, height: int | None = None) -> VerifiedState:
    """Any state key (R35), proven: `GET /state/proof?key=`."""
    return verify_key(client, genesis, key, height)


def verify_account(client: NodeClient, genesis: Genesis, address: bytes, height: int | None = None) -> VerifiedState:
    """The account `a ‖ address` (balance and nonce; absent when both are 0), proven."""
    return verify_key(client, genesis, account_key(address), height, f"/accounts/{address.hex()}/proof")


def verify_order(client: NodeClient, genesis: Genesis, order_id: bytes, height: int | None = None) -> VerifiedState:
    """The order `o ‖ id` (state, escrow, buyer, shop_id, history), proven."""
    return verify_key(client, genesis, order_key(order_id), height, f"/orders/{order_id.hex()}/proof")


def verify_shop(client: NodeClient, genesis: Genesis, shop_id: bytes, height: int | None = None) -> VerifiedState:
    """The shop `s ‖ id`, proven."""
    return verify_key(client, genesis, shop_key(shop_id), height, f"/shops/{shop_id.hex()}/proof")


def verify_listing(client: NodeClient, genesis: Genesis, listing_id: bytes,
                   height: int | None = None) -> VerifiedState:
    """The listing `l ‖ id`, proven."""
    return verify_key(client, genesis, listing_key(listing_id), height, f"/listings/{listing_id.hex()}/proof")


def verify_item(client: NodeClient, genesis: Genesis, item_id: str, height: int | None = None) -> VerifiedState:
    """The item `i ‖ id` (owner, custodian), proven."""
    return verify_key(client, genesis, item_key(item_id), height,
                      f"/items/{urllib.parse.quote(item_id, safe='')}/proof")
