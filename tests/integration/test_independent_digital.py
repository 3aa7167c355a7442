"""Digital goods (R41) against a real node, from a client written from PROTOCOL.md alone.

The client builds and signs every transaction with `msgpack`, `hashlib` and `nacl` only (R1,
R4, R8, R9: no import from `marketplace_tx`, `consensus`, `node` or `client`); the node runs as
a real process (`tests/e2e/node_process.py`, which builds no protocol data). One node, a few
blocks: each phase submits its transactions together and waits until all are final.

It checks a digital listing and its orders, `order_deliver` from `placed` and from `accepted`,
the content sealed (libsodium sealed box) to the buyer's X25519 key derived from the buyer's
address and opened from `GET /orders/{id}`, the R12 codes of the refusals with their
precedence, `order_confirm` → completed, and that a full refund of a delivered order returns
no stock while a cancelled undelivered one does.
"""

from __future__ import annotations

import hashlib
from typing import Any

import nacl.bindings
import nacl.public
import nacl.signing
import pytest

from tests.e2e.independent_light_client import canonical, sha256  # written from the page alone too
from tests.e2e.node_process import NodeProcess

TX_TAG = b"marketchain/tx/v1\x00"
FUNDS = 50_000_000
PRICE = 1_000
STOCK = 5


class Signer:
    """An account of the independent client: its key and its next nonce."""

    def __init__(self, seed: bytes, nonce: int = 0) -> None:
        self.key = nacl.signing.SigningKey(seed)
        self.address = bytes(self.key.verify_key)
        self.nonce = nonce

    @classmethod
    def named(cls, name: str) -> Signer:
        """A fresh account with a deterministic key."""
        return cls(hashlib.sha256(b"independent digital/" + name.encode()).digest())

    def build(self, chain_id: str, tx_type: str, payload: dict[str, Any], fee: int, nonce: int | None = None) -> bytes:
        """R8: the signed transaction's canonical bytes; the signature covers the map without `sig` (R4)."""
        unsigned = {"chain_id": chain_id, "fee": fee, "nonce": self.nonce if nonce is None else nonce,
                    "payload": payload, "sender": self.address, "type": tx_type}
        if nonce is None:
            self.nonce += 1
        return canonical({**unsigned, "sig": self.key.sign(TX_TAG + canonical(unsigned)).signature})

    def curve_public(self) -> bytes:
        """R13, R41: the X25519 key derived from this Ed25519 address."""
        return nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(self.address)

    def open(self, sealed: bytes) -> bytes:
        """Open a sealed box addressed to this account."""
        secret = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(bytes(self.key) + self.address)
        return nacl.public.SealedBox(nacl.public.PrivateKey(secret)).decrypt(sealed)


def seal_to(recipient: Signer, content: bytes) -> bytes:
    return nacl.public.SealedBox(nacl.public.PublicKey(recipient.curve_public())).encrypt(content)


MERCHANT = Signer.named("merchant")
BUYER = Signer.named("buyer")
CARRIER = Signer.named("carrier")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory):
    funded = {MERCHANT.address: FUNDS, BUYER.address: FUNDS}
    with NodeProcess(tmp_path_factory.mktemp("independent-digital") / "node", params={"open_merchants": "true"},
                     fund=funded) as running:
        yield running


class Session:
    """Builds, submits and awaits the transactions of one phase (one or two blocks)."""

    def __init__(self, node: NodeProcess) -> None:
        self.node = node
        self.chain_id = node.status()["chain_id"]
        self.fee = node.genesis()["params"]["min_fee"]
        self.sent: dict[str, bytes] = {}

    def tx(self, signer: Signer, name: str, tx_type: str, payload: dict[str, Any]) -> bytes:
        """Build and submit one transaction (admission must accept it); its hash, the id it creates (R9)."""
        raw = self.tx_bytes(signer, tx_type, payload)
        code, body = self.node.post("/txs", raw, "application/msgpack")
        assert (code, body) == (202, {"hash": sha256(raw).hex()}), body
        self.sent[name] = raw
        return sha256(raw)

    def tx_bytes(self, signer: Signer, tx_type: str, payload: dict[str, Any]) -> bytes:
        return signer.build(self.chain_id, tx_type, payload, self.fee)

    def results(self) -> dict[str, dict[str, Any]]:
        """Wait until every submitted transaction is committed; their results by name."""
        views = {name: self.node.wait_for_tx(sha256(raw).hex()) for name, raw in self.sent.items()}
        self.sent = {}
        return {name: view["result"] for name, view in views.items()}


def failed(result: dict[str, Any], code: str) -> bool:
    return result["ok"] is False and result["code"] == code


@pytest.mark.integration
def test_digital_goods_against_a_real_node(node: NodeProcess) -> None:
    session = Session(node)
    get = node.get_ok

    # 1. A shop, a digital listing, a parcel listing; digital + item_ids is admitted and refused by the rule.
    shop = session.tx(MERCHANT, "shop", "shop_create", {"max_redeem_bps": 0, "name": "Keys", "points_bps": 0})
    listing_fields = {"price": PRICE, "shop_id": shop, "stock": STOCK}
    digital = session.tx(MERCHANT, "digital", "listing_create", {**listing_fields, "digital": True, "title": "Gift card"})
    parcel = session.tx(MERCHANT, "parcel", "listing_create", {**listing_fields, "title": "Mug"})
    session.tx(MERCHANT, "items", "listing_create",
               {**listing_fields, "digital": True, "item_ids": ["no-such-item"], "stock": 1, "title": "Bad"})
    results = session.results()
    assert all(results[name]["ok"] for name in ("shop", "digital", "parcel")), results
    assert failed(results["items"], "invalid_field"), results["items"]  # before not_found for the item (R12)
    assert "digital" in results["items"]["message"]
    assert get(f"/listings/{digital.hex()}")["digital"] is True
    assert get(f"/listings/{parcel.hex()}")["digital"] is False

    # Admission: content outside 48..4096 bytes is invalid_field (R10), and uses no nonce.
    for size in (47, 4097):
        raw = MERCHANT.build(session.chain_id, "order_deliver", {"content": b"\x01" * size, "order_id": b"\x02" * 32},
                             session.fee, nonce=MERCHANT.nonce)
        code, body = node.post("/txs", raw, "application/msgpack")
        assert code == 400 and body["error"]["code"] == "invalid_field", body

    # 2. Three digital orders and a parcel order; shipping sealed to the merchant (R13).
    shipping = seal_to(MERCHANT, b"no parcel: e-mail only")
    place = {"listing_id": digital, "max_unit_price": PRICE, "quantity": 1, "shipping": shipping}
    first = session.tx(BUYER, "first", "order_place", place)
    second = session.tx(BUYER, "second", "order_place", place)
    third = session.tx(BUYER, "third", "order_place", place)
    boxed = session.tx(BUYER, "boxed", "order_place", {**place, "listing_id": parcel})
    registrar = Signer(node.validator_seed, node.account(node.validator_address)["nonce"])  # R33; paid by fees
    session.tx(registrar, "grant", "role_grant", {"account": CARRIER.address, "evidence_hash": b"\x00" * 32,
                                                  "role": "carrier"})
    assert all(result["ok"] for result in session.results().values())
    assert get(f"/listings/{digital.hex()}")["stock"] == STOCK - 3
    view = get(f"/orders/{first.hex()}")
    assert (view["digital"], view["delivery"], view["state"]) == (True, None, "placed")
    assert get(f"/orders/{boxed.hex()}")["digital"] is False

    # 3. Deliver from placed; accept another; the refusals in R12 order.
    code = b"GIFT-7Q2K-99XZ-ABCD"
    session.tx(MERCHANT, "deliver_placed", "order_deliver", {"content": seal_to(BUYER, code), "order_id": first})
    session.tx(MERCHANT, "accept", "order_accept", {"order_id": second})
    session.tx(MERCHANT, "deliver_parcel", "order_deliver", {"content": seal_to(BUYER, b"x"), "order_id": boxed})
    session.tx(BUYER, "by_buyer", "order_deliver", {"content": seal_to(BUYER, b"x"), "order_id": boxed})
    session.tx(BUYER, "unknown", "order_deliver", {"content": seal_to(BUYER, b"x"), "order_id": b"\x07" * 32})
    results = session.results()
    assert results["deliver_placed"]["ok"] and results["accept"]["ok"], results
    assert {"type": "order_state", "order_id": first.hex(), "from": "placed", "to": "delivered",
            "by": "order_deliver"}.items() <= next(
        event for event in results["deliver_placed"]["events"] if event.get("type") == "order_state").items()
    assert failed(results["deliver_parcel"], "invalid_state"), results["deliver_parcel"]
    assert failed(results["by_buyer"], "forbidden"), results["by_buyer"]  # before the parcel's invalid_state
    assert failed(results["unknown"], "not_found"), results["unknown"]  # before the buyer's forbidden

    view = get(f"/orders/{first.hex()}")
    assert (view["state"], view["digital"], view["accepted_at"]) == ("delivered", True, None)
    assert view["deadline"] == view["delivered_at"] + node.genesis()["params"]["confirm_window_ms"]
    assert view["history"][-1]["event"] == "order_deliver" and "content" not in view["history"][-1]
    assert BUYER.open(bytes.fromhex(view["delivery"])) == code  # only the buyer can open it

    # 4. Deliver from accepted; a digital order is neither shipped nor returned; confirm completes.
    session.tx(MERCHANT, "deliver_accepted", "order_deliver", {"content": seal_to(BUYER, b"second code"),
                                                               "order_id": second})
    session.tx(MERCHANT, "ship", "order_ship", {"carrier": CARRIER.address, "order_id": third, "tracking": "T"})
    session.tx(BUYER, "return", "return_request", {"order_id": first, "reason": "changed my mind"})
    session.tx(BUYER, "confirm", "order_confirm", {"order_id": first})
    results = session.results()
    assert results["deliver_accepted"]["ok"] and results["confirm"]["ok"], results
    assert failed(results["ship"], "invalid_state"), results["ship"]
    assert failed(results["return"], "invalid_state"), results["return"]
    view = get(f"/orders/{second.hex()}")
    assert view["state"] == "delivered" and view["accepted_at"] is not None
    assert BUYER.open(bytes.fromhex(view["delivery"])) == b"second code"
    view = get(f"/orders/{first.hex()}")
    assert (view["state"], view["escrow"], view["merchant_paid"]) == ("completed", 0, PRICE)

    # 5. A full refund of a delivered order returns the money, not the stock; a cancelled one returns both.
    buyer_before = node.account(BUYER.address)["balance"]
    session.tx(MERCHANT, "refund", "order_refund", {"amount": PRICE, "order_id": second})
    session.tx(BUYER, "cancel", "order_cancel", {"order_id": third})
    assert all(result["ok"] for result in session.results().values())
    view = get(f"/orders/{second.hex()}")
    assert (view["state"], view["refunded"], view["delivery"] is not None) == ("refunded", PRICE, True)
    assert node.account(BUYER.address)["balance"] == buyer_before + 2 * PRICE - session.fee
    listing = get(f"/listings/{digital.hex()}")
    assert (listing["stock"], listing["sold"]) == (STOCK - 2, 1)  # first sold, second delivered then refunded
