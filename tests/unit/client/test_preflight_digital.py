"""Check before signing for digital goods (R41): `order_deliver` only by the merchant, only on a
digital order in placed or accepted, with content that fits; `order_ship` and `return_request`
never on a digital order; a digital listing sells no unique items. Codes and precedence as the
chain's (R12)."""

from __future__ import annotations

from typing import Any

import pytest

from client.preflight import check_before_signing
from tests.unit.client.test_preflight import (
    BUYER,
    CARRIER,
    MERCHANT,
    ORDER_ID,
    SHOP_ID,
    FakeNode,
    refusal,
)

SEALED = bytes(80)
DELIVER = {"order_id": ORDER_ID, "content": SEALED}


@pytest.mark.parametrize(("sender", "tx_type", "payload", "order", "expected"), [
    (MERCHANT, "order_deliver", DELIVER, {"state": "placed"}, ("R41", "invalid_state")),
    (BUYER, "order_deliver", DELIVER, {"state": "placed"}, ("§4", "forbidden")),
    (BUYER, "order_deliver", DELIVER, {"state": "placed", "digital": True}, ("§4", "forbidden")),
    (MERCHANT, "order_deliver", DELIVER, {"state": "shipped", "digital": True}, ("§5", "invalid_state")),
    (MERCHANT, "order_deliver", DELIVER, {"state": "delivered", "digital": True}, ("§5", "invalid_state")),
    (MERCHANT, "order_deliver", {"order_id": b"\x01" * 32, "content": SEALED}, {}, ("R11", "not_found")),
    (MERCHANT, "order_deliver", {"order_id": b"\x01" * 32, "content": bytes(47)}, {}, ("R41", "invalid_field")),
    (MERCHANT, "order_deliver", {**DELIVER, "content": bytes(4097)}, {"state": "placed", "digital": True},
     ("R41", "invalid_field")),
    (MERCHANT, "order_ship", {"order_id": ORDER_ID, "carrier": CARRIER, "tracking": "T"},
     {"state": "accepted", "digital": True}, ("R41", "invalid_state")),
    (BUYER, "return_request", {"order_id": ORDER_ID, "reason": "r"}, {"state": "delivered", "digital": True},
     ("R41", "invalid_state")),
    (BUYER, "listing_create", {"shop_id": SHOP_ID, "title": "t", "price": 1, "stock": 1, "item_ids": ["A"],
                               "digital": True}, {}, ("R41", "invalid_field")),
])
def test_doomed_digital_transactions_are_refused(sender: bytes, tx_type: str, payload: dict[str, Any],
                                                 order: dict[str, Any], expected: tuple[str, str]) -> None:
    assert refusal(FakeNode(**order), sender, tx_type, payload) == expected


@pytest.mark.parametrize("state", ["placed", "accepted"])
def test_a_delivery_says_what_it_would_do(state: str) -> None:
    node = FakeNode(state=state, digital=True)
    lines = check_before_signing(node, MERCHANT, "order_deliver", DELIVER, None)  # type: ignore[arg-type]
    assert lines[0] == (f"order {ORDER_ID.hex()}: {state} → delivered; the goods sealed to the buyer "
                        f"({len(SEALED)} bytes); escrow to the merchant when the buyer confirms or the "
                        "confirm window ends")
    listing = {"shop_id": SHOP_ID, "title": "Gift card", "price": 1, "stock": 5, "digital": True}
    assert "digital" in check_before_signing(node, MERCHANT, "listing_create", listing, None)[0]  # type: ignore[arg-type]
