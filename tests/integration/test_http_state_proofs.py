"""Issue 14, HTTP: state proofs and light-client change points on a real node (PROTOCOL R36,
R37, R38; node/http/state_proofs.py, docs/api.md "State proofs").

- Proofs of an account, an order, a shop, a listing and an item made by signed transactions,
  and absence proofs of unknown ids, verify (R36) against the `state_root` of the header of
  their height, taken from `/blocks/{h}/raw` (decoded and hashed here, never the root the
  node sends along); `/state/proof?key=` answers the same proof as the object's route.
- `?height=` proves an older version; above the head is 404 `not_found`, older than
  `[storage] keep_state` is 410 `pruned`; a parameter that does not parse is 400, never 500.
- `/light/changes` lists the change point a `validator_vote` made, with its header, commit and
  next set; its `limit` is at most 1,000. `/genesis` is the node's genesis document.
- An old-height proof is charged by how far back it reaches, before it is built: a client
  hammering them is answered 429 while latest proofs of another address are served.
- The test-only lying switch (`MARKETCHAIN_TEST_CORRUPT_PROOFS=1`) makes every proof fail R36.

Requests that must not share a budget come from their own 127.x.y.z source address (Linux
routes all of 127/8 to lo).
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from marketplace_tx.chain.block import Commit, Header, decode_block
from marketplace_tx.chain.genesis import Genesis
from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.primitives.sparse_merkle import InvalidProof, StateProof, verify_state_proof
from marketplace_tx.rules.state_keys import account_key, item_key, listing_key, order_key, shop_key
from marketplace_tx.rules.validators import validators_hash
from node.http.costs import REQUEST_COST, changed_keys_cost, state_proof_cost
from node.http.state_proofs import CORRUPT_PROOFS_VARIABLE, MAX_CHANGES, MAX_KEY_BYTES
from tests.e2e.node_process import NodeProcess, is_error_body, wait_until
from tests.integration.signing_client import SigningClient, sealed_address
from tests.integration.test_http_work_limits import Answer
from tests.integration.test_http_work_limits import call as call_from

pytestmark = pytest.mark.integration

DEADLINE_S = 60.0
"""Generous: the machine is loaded."""
KEEP_STATE = 4
"""The main node keeps proofs for its last 4 heights."""
RATE, BURST = 1, 5
"""The small node's budget per address: 1 request unit per second, bursts of 5 (two latest proofs)."""
KEYS_PER_BLOCK = 2
"""A transfer's block changes at least the sender's and the recipient's accounts."""
FAR_BACK = next(back for back in itertools.count(1)
                if REQUEST_COST + state_proof_cost(back) + changed_keys_cost(KEYS_PER_BLOCK * back) > BURST + 1)
"""Heights back at which one proof costs more than a full bucket of the small node (and its
debt outlasts the next request)."""


def key(name: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(b"test_http_state_proofs/" + name.encode()).digest())


MERCHANT, BUYER, SENDER, STRANGER = (key(name) for name in ("merchant", "buyer", "sender", "stranger"))
FUNDED = 10_000_000
ITEM_ID = "PROOF-ITEM:001"
EVIDENCE = hashlib.sha256(b"kyc").digest()
_sources = (f"127.0.{20 + n // 250}.{n % 250 + 1}" for n in itertools.count())
"""Fresh loopback source addresses: each has its own full bucket."""


# --- HTTP from a chosen source address ------------------------------------------------------


def call(node: NodeProcess, path: str, source: str = "127.0.0.1", method: str = "GET",
         body: bytes | None = None) -> Answer:
    """One request from the loopback address `source` on a fresh connection (msgpack body)."""
    return call_from(node, method, path, source, body, "application/msgpack" if body is not None else None)


def ok(node: NodeProcess, path: str, source: str = "127.0.0.1") -> Any:
    answer = call(node, path, source)
    assert answer.status == 200, (path, answer)
    return answer.body


def assert_error(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status, answer
    assert is_error_body(answer.body) and answer.body["error"]["code"] == code, answer
    assert answer.body["error"]["message"], answer


def commit_from_fresh_sources(node: NodeProcess, tx: Transaction) -> dict[str, Any]:
    """Submit and wait until final, every request from a fresh source (a tight budget stays whole)."""
    submitted = call(node, "/txs", next(_sources), "POST", tx.raw)
    assert submitted.status == 202, submitted

    def committed() -> dict[str, Any] | None:
        answer = call(node, f"/txs/{tx.hash.hex()}", next(_sources))
        return answer.body if answer.status == 200 and answer.body["status"] == "committed" else None

    return wait_until(committed, DEADLINE_S, f"tx {tx.hash.hex()} committed")


# --- checking a proof as a client would -----------------------------------------------------------


def header_at(node: NodeProcess, height: int) -> Header:
    """Header `height`, decoded from the canonical block bytes and checked against its hash."""
    raw = call(node, f"/blocks/{height}/raw")
    assert raw.status == 200, raw
    block = decode_block(raw.body, node.status()["params"]["max_block_bytes"])
    assert block.header.height == height and block.hash.hex() == ok(node, f"/blocks/{height}")["hash"]
    return block.header


def parsed(body: dict[str, Any]) -> StateProof:
    return StateProof.from_json({name: value for name, value in body.items() if name != "state_root"})


def verified(node: NodeProcess, body: dict[str, Any], state_key: bytes, height: int | None = None) -> StateProof:
    """The proof of `body`, checked (R36) against the header of its height (the asked one if given)."""
    assert set(body) == {"height", "key", "value", "leaf", "siblings", "state_root"}, body
    proof_height = body["height"] if height is None else height
    header = header_at(node, proof_height)
    assert body["state_root"] == header.state_root.hex()
    proof = parsed(body)
    verify_state_proof(proof, state_key, proof_height, header.state_root)
    return proof


def record(proof: StateProof) -> Any:
    assert proof.value is not None, "an inclusion proof was expected"
    return codec.decode(proof.value)


# --- the market on the main node ---------------------------------------------------------------------


@dataclass
class Market:
    node: NodeProcess
    client: SigningClient
    shop_id: bytes
    listing_id: bytes
    order_id: bytes


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    fund = {person.address: FUNDED for person in (MERCHANT, BUYER, SENDER)}
    with NodeProcess(tmp_path_factory.mktemp("proofs") / "node", fund=fund,
                     config={"storage": {"keep_state": KEEP_STATE}}) as node:
        client = SigningClient(node)
        client.ok(client.tx(node.validator_key, "role_grant", account=MERCHANT.address, role="merchant",
                            evidence_hash=EVIDENCE))
        shop = client.tx(MERCHANT, "shop_create", name="Proof Shop", points_bps=0, max_redeem_bps=0)
        client.ok(shop)
        client.ok(client.tx(MERCHANT, "item_register", item_id=ITEM_ID, description="a proven teapot"))
        listing = client.tx(MERCHANT, "listing_create", shop_id=shop.hash, title="Tea", price=1_000, stock=5)
        client.ok(listing)
        order = client.tx(BUYER, "order_place", listing_id=listing.hash, quantity=2, max_unit_price=1_000,
                          shipping=sealed_address(MERCHANT))
        client.ok(order)
        yield Market(node, client, shop.hash, listing.hash, order.hash)


def test_proofs_of_every_object_verify_against_the_header_of_their_height(market: Market) -> None:
    node = market.node
    account = verified(node, ok(node, f"/accounts/{BUYER.address.hex()}/proof"), account_key(BUYER.address))
    balance = node.account(BUYER.address)["balance"]
    assert record(account) == {"balance": balance, "nonce": 1} and balance < FUNDED - 2_000
    order = record(verified(node, ok(node, f"/orders/{market.order_id.hex()}/proof"), order_key(market.order_id)))
    assert order["buyer"] == BUYER.address and order["state"] == "placed" and order["escrow"] == 2_000
    shop = record(verified(node, ok(node, f"/shops/{market.shop_id.hex()}/proof"), shop_key(market.shop_id)))
    assert shop["owner"] == MERCHANT.address and shop["name"] == "Proof Shop"
    listing_path = f"/listings/{market.listing_id.hex()}/proof"
    listing = record(verified(node, ok(node, listing_path), listing_key(market.listing_id)))
    assert listing["shop_id"] == market.shop_id and listing["title"] == "Tea"
    item = record(verified(node, ok(node, f"/items/{ITEM_ID}/proof"), item_key(ITEM_ID)))
    assert item["owner"] == MERCHANT.address


def test_absence_proofs_of_unknown_ids_verify(market: Market) -> None:
    node = market.node
    unknown = hashlib.sha256(b"nothing here").digest()
    routes = {f"/accounts/{STRANGER.address.hex()}/proof": account_key(STRANGER.address),
              f"/orders/{unknown.hex()}/proof": order_key(unknown),
              f"/shops/{unknown.hex()}/proof": shop_key(unknown),
              f"/listings/{unknown.hex()}/proof": listing_key(unknown),
              "/items/NO-SUCH-ITEM/proof": item_key("NO-SUCH-ITEM"),
              f"/state/proof?key={b'zz-no-family'.hex()}": b"zz-no-family"}
    for path, state_key in routes.items():
        body = ok(node, path)
        assert body["value"] is None, (path, body)
        verified(node, body, state_key)


def test_a_state_key_route_answers_the_object_route_proof(market: Market) -> None:
    node = market.node
    height = node.height()
    by_key = ok(node, f"/state/proof?key={order_key(market.order_id).hex().upper()}&height={height}")
    by_object = ok(node, f"/orders/{market.order_id.hex()}/proof?height={height}")
    assert by_key == by_object and by_key["height"] == height
    validators = ok(node, f"/state/proof?key={b'v'.hex()}")
    assert codec.decode(parsed(validators).value or b"") == {"validators": [node.validator_address]}


def test_an_older_height_proves_the_state_of_then(market: Market) -> None:
    node, client = market.node, market.client
    first = client.ok(client.tx(SENDER, "transfer", to=STRANGER.address, amount=1_000))[0]
    second = client.ok(client.tx(SENDER, "transfer", to=STRANGER.address, amount=2_000))[0]
    assert second["height"] > first["height"]
    path = f"/accounts/{STRANGER.address.hex()}/proof"
    then = verified(node, ok(node, f"{path}?height={first['height']}"), account_key(STRANGER.address),
                    first["height"])
    assert record(then) == {"balance": 1_000, "nonce": 0}
    before = verified(node, ok(node, f"{path}?height={first['height'] - 1}"), account_key(STRANGER.address),
                      first["height"] - 1)
    assert before.value is None
    assert record(verified(node, ok(node, path), account_key(STRANGER.address))) == {"balance": 3_000, "nonce": 0}


def test_a_height_above_the_head_is_not_found_and_one_not_kept_is_pruned(market: Market) -> None:
    node, client = market.node, market.client
    while node.height() < KEEP_STATE + 3:
        client.ok(client.tx(SENDER, "transfer", to=STRANGER.address, amount=1))
    head = node.height()
    address = SENDER.address.hex()
    assert_error(call(node, f"/accounts/{address}/proof?height={head + 1000}"), 404, "not_found")
    assert_error(call(node, f"/accounts/{address}/proof?height=1"), 410, "pruned")
    assert_error(call(node, f"/state/proof?key=61&height={head - KEEP_STATE - 1}"), 410, "pruned")
    assert call(node, f"/accounts/{address}/proof?height=0").status in (200, 404, 410)


@pytest.mark.parametrize("query", [
    "", "key=", "key=zz", "key=abc", "key=" + "00" * (MAX_KEY_BYTES + 1), "key=61&height=",
    "key=61&height=-1", "key=61&height=1.5", "key=61&height=abc", "key=61&height=%EF%BC%91",
    "key=61&height=" + "9" * 30,
])
def test_a_bad_state_proof_parameter_is_400(market: Market, query: str) -> None:
    assert_error(call(market.node, f"/state/proof?{query}"), 400, "invalid_query")


@pytest.mark.parametrize("path", [
    "/accounts/xyz/proof", "/accounts/" + "0" * 63 + "/proof", "/orders/" + "g" * 64 + "/proof",
    "/shops/" + "00" * 33 + "/proof", "/listings/" + "0" * 64 + "/proof?height=x",
    "/items/bad%20id/proof", "/items/" + "a" * 65 + "/proof", "/light/changes?limit=0",
    f"/light/changes?limit={MAX_CHANGES + 1}", "/light/changes?after=-1", "/light/changes?after=",
])
def test_a_bad_proof_or_changes_parameter_is_400(market: Market, path: str) -> None:
    assert_error(call(market.node, path), 400, "invalid_query")


def test_a_key_of_the_largest_size_is_proven_absent(market: Market) -> None:
    state_key = b"z" * MAX_KEY_BYTES
    body = ok(market.node, f"/state/proof?key={state_key.hex()}")
    assert body["value"] is None
    verified(market.node, body, state_key)


def test_genesis_is_the_document_the_node_read(market: Market) -> None:
    node = market.node
    document = ok(node, "/genesis")
    assert document == node.genesis()
    assert Genesis.from_json(document).hash.hex() == node.status()["genesis_hash"]


def test_light_changes_of_a_chain_whose_set_never_changed_are_empty(market: Market) -> None:
    assert ok(market.node, f"/light/changes?limit={MAX_CHANGES}") == {"changes": [], "next": None}


# --- a validator-set change -------------------------------------------------------------------------


def test_light_changes_list_the_change_point_a_vote_made(tmp_path: Any) -> None:
    newcomer = key("newcomer")
    with NodeProcess(tmp_path / "node", fund={SENDER.address: FUNDED}) as node:
        client = SigningClient(node)
        vote = client.ok(client.tx(node.validator_key, "validator_vote", action="add",
                                   validator=newcomer.address))[0]
        # the set changes from the block after next: the next header (made at once, even
        # empty) is the change point; the chain then waits for the newcomer, which never runs
        node.wait_for_height(vote["height"] + 1)
        page = ok(node, "/light/changes")
        assert page["next"] is None and [change["height"] for change in page["changes"]] == [vote["height"] + 1]
        (change,) = page["changes"]
        header = Header.from_map(codec.decode(bytes.fromhex(change["header"])))
        commit = Commit.from_map(_commit_map(change["commit"]))
        assert header.height == change["height"] and commit.block_hash == header.hash
        assert change["commit"] == ok(node, f"/blocks/{header.height}/commit")
        following = sorted([node.validator_address, newcomer.address])
        assert change["next_validators"] == [address.hex() for address in following]
        assert header.next_validators_hash == validators_hash(following) != header.validators_hash
        assert ok(node, f"/light/changes?after={header.height}") == {"changes": [], "next": None}


def _commit_map(commit: dict[str, Any]) -> dict[str, Any]:
    """The `/blocks/{h}/commit` JSON back as the canonical commit map (hex → bytes)."""
    signatures = [{"signature": bytes.fromhex(item["signature"]), "validator": bytes.fromhex(item["validator"])}
                  for item in commit["signatures"]]
    return {**commit, "block_hash": bytes.fromhex(commit["block_hash"]), "signatures": signatures}


# --- the small node: a tight budget, and it lies -----------------------------------------------------


@contextmanager
def environment(name: str, value: str) -> Iterator[None]:
    """`name=value` in this process's environment (so in a node started meanwhile), then as before."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


@pytest.fixture(scope="module")
def small_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    config = {"http": {"rate_per_ip": RATE, "burst_per_ip": BURST}}
    with environment(CORRUPT_PROOFS_VARIABLE, "1"):
        node = NodeProcess(tmp_path_factory.mktemp("small") / "node", fund={SENDER.address: FUNDED}, config=config)
        node.start()
    try:
        chain_id = ok(node, "/status", next(_sources))["chain_id"]
        for nonce in range(FAR_BACK + 2):
            tx = sign_transaction(SENDER, chain_id, "transfer", {"to": STRANGER.address, "amount": 1}, nonce, 10)
            commit_from_fresh_sources(node, tx)
        yield node
    finally:
        node.stop()


def test_old_height_proofs_are_charged_by_how_far_back_they_reach(small_node: NodeProcess) -> None:
    head = ok(small_node, "/status", next(_sources))["height"]
    assert head > FAR_BACK
    path = f"/accounts/{SENDER.address.hex()}/proof"
    hammer = next(_sources)
    assert call(small_node, f"{path}?height={head - FAR_BACK}", hammer).status == 200  # paid from a full bucket
    refused = call(small_node, f"{path}?height={head - FAR_BACK}", hammer)
    assert_error(refused, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) >= 1
    other = next(_sources)
    assert 2 * (REQUEST_COST + state_proof_cost(0)) <= BURST
    for _ in range(2):  # the same budget pays for two latest proofs in a row
        assert call(small_node, path, other).status == 200


def test_the_lying_switch_corrupts_every_proof(small_node: NodeProcess) -> None:
    assert "CORRUPTED state proofs" in small_node.log_path.read_text()
    for path, state_key in ((f"/accounts/{SENDER.address.hex()}/proof", account_key(SENDER.address)),
                            (f"/accounts/{MERCHANT.address.hex()}/proof", account_key(MERCHANT.address))):
        body = ok(small_node, path, next(_sources))
        header = header_at_from(small_node, body["height"])
        assert body["state_root"] == header.state_root.hex()
        with pytest.raises(InvalidProof):
            verify_state_proof(parsed(body), state_key, body["height"], header.state_root)


def header_at_from(node: NodeProcess, height: int) -> Header:
    """`header_at` with every request from a fresh source (the small node's budget is tight)."""
    raw = call(node, f"/blocks/{height}/raw", next(_sources))
    assert raw.status == 200, raw
    params = ok(node, "/status", next(_sources))["params"]
    return decode_block(raw.body, params["max_block_bytes"]).header
