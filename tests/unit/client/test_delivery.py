"""Opening and sealing digital goods against what the parties signed (`client.delivery`, R41):
only the buyer's key, only a digital order that was delivered, and only the box of the
merchant's own `order_deliver` transaction; a node's swapped box or sender is refused."""

from __future__ import annotations

from typing import Any

import pytest

from client import delivery
from client.delivery import DeliveryError, open_delivery, seal_delivery, verify_delivery
from client.sealing import SealError, seal_content
from client.verification import Verification, VerificationFailed
from marketplace_tx.chain.transaction import sign_transaction
from marketplace_tx.primitives.crypto import KeyPair

BUYER, MERCHANT, STRANGER = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
ORDER_ID = b"\xaa" * 32
CODE = b"GIFT-7Q2X-94KD-PL0M"


def delivered_order(sealed: bytes, signer: KeyPair = MERCHANT, order_id: bytes = ORDER_ID,
                    monkeypatch: pytest.MonkeyPatch | None = None) -> dict[str, Any]:
    """The node's JSON of a delivered digital order whose order_deliver tx `signer` signed with `sealed`;
    the tx's finality check answers with that transaction's bytes."""
    tx = sign_transaction(signer, "test", "order_deliver", {"order_id": order_id, "content": sealed}, 0, 10)
    if monkeypatch is not None:
        monkeypatch.setattr(delivery, "verify_transaction", lambda client, tx_hash, genesis=None: Verification(
            tx_hash, 5, "00" * 32, 1, 1, tx.raw))
    return {"id": ORDER_ID.hex(), "state": "delivered", "digital": True, "buyer": BUYER.address.hex(),
            "merchant": MERCHANT.address.hex(), "delivery": sealed.hex(),
            "history": [{"event": "order_place", "tx": ORDER_ID.hex()},
                        {"event": "order_deliver", "state": "delivered", "tx": tx.hash.hex()}]}


def test_the_buyer_opens_the_merchants_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    order = delivered_order(seal_content(BUYER.address, CODE), monkeypatch=monkeypatch)
    assert open_delivery(None, BUYER, ORDER_ID, order) == CODE  # type: ignore[arg-type]


@pytest.mark.parametrize(("change", "message"), [
    ({"digital": False}, "not a digital order"),
    ({"delivery": None, "state": "accepted"}, "nothing was delivered yet: the order is accepted"),
])
def test_nothing_to_open(change: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    order = {**delivered_order(seal_content(BUYER.address, CODE), monkeypatch=monkeypatch), **change}
    with pytest.raises(DeliveryError, match=message):
        open_delivery(None, BUYER, ORDER_ID, order)  # type: ignore[arg-type]


def test_only_the_buyers_key_opens_it(monkeypatch: pytest.MonkeyPatch) -> None:
    order = delivered_order(seal_content(BUYER.address, CODE), monkeypatch=monkeypatch)
    for key in (MERCHANT, STRANGER):
        with pytest.raises(DeliveryError, match="is not this order's buyer"):
            open_delivery(None, key, ORDER_ID, order)  # type: ignore[arg-type]
    misdirected = delivered_order(seal_content(STRANGER.address, CODE), monkeypatch=monkeypatch)
    with pytest.raises(DeliveryError, match="does not open with the buyer's key"):
        open_delivery(None, BUYER, ORDER_ID, misdirected)  # type: ignore[arg-type]


def test_a_node_cannot_swap_the_box_or_its_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    genuine = seal_content(BUYER.address, CODE)
    fake = seal_content(BUYER.address, b"FAKE-CODE-FROM-A-LYING-NODE")
    swapped = {**delivered_order(genuine, monkeypatch=monkeypatch), "delivery": fake.hex()}
    with pytest.raises(VerificationFailed, match="not the one in the order_deliver"):
        verify_delivery(None, ORDER_ID, swapped)  # type: ignore[arg-type]
    forged = delivered_order(fake, signer=STRANGER, monkeypatch=monkeypatch)
    with pytest.raises(VerificationFailed, match="not by the order's merchant"):
        open_delivery(None, BUYER, ORDER_ID, forged)  # type: ignore[arg-type]
    other_order = delivered_order(genuine, order_id=b"\xbb" * 32, monkeypatch=monkeypatch)
    with pytest.raises(VerificationFailed, match="is not an order_deliver of order"):
        verify_delivery(None, ORDER_ID, other_order)  # type: ignore[arg-type]
    with pytest.raises(VerificationFailed, match="malformed"):
        verify_delivery(None, ORDER_ID, {**swapped, "history": []})  # type: ignore[arg-type]


def test_sealing_refuses_empty_content_before_asking_the_node() -> None:
    with pytest.raises(SealError, match="empty"):
        seal_delivery(None, ORDER_ID, b"")  # type: ignore[arg-type]


class Proven:
    """A `VerifiedState` stand-in: the decoded order record a state proof yielded."""

    def __init__(self, record: Any) -> None:
        self.record = record

    def decoded(self) -> Any:
        return self.record


def test_with_a_genesis_the_box_comes_from_the_proven_order(monkeypatch: pytest.MonkeyPatch) -> None:
    genuine = seal_content(BUYER.address, CODE)
    fake = seal_content(BUYER.address, b"FAKE-CODE-FROM-A-LYING-NODE")
    node_view = {**delivered_order(genuine), "delivery": fake.hex(), "history": []}  # the node's JSON lies
    proven = {"buyer": BUYER.address, "merchant": MERCHANT.address, "digital": True, "delivery": genuine}
    monkeypatch.setattr(delivery, "verify_order", lambda client, genesis, order_id: Proven(proven))
    assert open_delivery(None, BUYER, ORDER_ID, node_view, genesis=object()) == CODE  # type: ignore[arg-type]
    monkeypatch.setattr(delivery, "verify_order", lambda client, genesis, order_id: Proven({**proven, "delivery": None}))
    with pytest.raises(VerificationFailed, match="holds no delivery"):
        open_delivery(None, BUYER, ORDER_ID, node_view, genesis=object())  # type: ignore[arg-type]
    monkeypatch.setattr(delivery, "verify_order", lambda client, genesis, order_id: Proven(
        {**proven, "buyer": STRANGER.address}))
    with pytest.raises(VerificationFailed, match="is not an order of buyer"):
        open_delivery(None, BUYER, ORDER_ID, node_view, genesis=object())  # type: ignore[arg-type]
