"""Event ids of the merchant agent (client/merchant/events.py, contract of issue 16): the id of a
stream event and of the same change rebuilt from the order's history are equal, and follow the
documented formula."""

from __future__ import annotations

import hashlib

from client.merchant.events import (
    change_from_stream,
    changes_from_history,
    deadline_warning_id,
    order_event_id,
)

ORDER = bytes(range(32))
TX = bytes([7]) * 32


def test_the_id_is_the_documented_hash() -> None:
    expected = "evt_" + hashlib.sha256(ORDER + (12).to_bytes(8, "big") + TX + b"delivered").digest()[:16].hex()
    assert order_event_id(ORDER, 12, TX, "delivered") == expected
    by_deadline = "evt_" + hashlib.sha256(ORDER + (13).to_bytes(8, "big") + b"deadline" + b"expired").digest()[:16].hex()
    assert order_event_id(ORDER, 13, None, "expired") == by_deadline
    warning = "evt_" + hashlib.sha256(ORDER + b"deadline_warning" + (5000).to_bytes(8, "big")).digest()[:16].hex()
    assert deadline_warning_id(ORDER, 5000) == warning


def order_json() -> dict:
    return {"id": ORDER.hex(), "state": "completed", "delivery": "ff" * 48, "history": [
        {"event": "order_place", "state": "placed", "height": 10, "time": 1000, "tx": "11" * 32},
        {"event": "order_deliver", "state": "delivered", "height": 12, "time": 1200, "tx": TX.hex()},
        {"event": "order_refund", "state": "delivered", "height": 13, "time": 1300, "tx": "22" * 32, "amount": 5},
        {"event": "deadline", "state": "completed", "height": 20, "time": 2000, "tx": "deadline"},
    ]}


def test_history_and_stream_give_the_same_changes_and_ids() -> None:
    changes = list(changes_from_history(order_json()))
    assert [(c.from_state, c.to_state, c.by, c.height) for c in changes] == [
        (None, "placed", "order_place", 10), ("placed", "delivered", "order_deliver", 12),
        ("delivered", "completed", "deadline", 20)]  # the partial refund changed no state
    streamed = change_from_stream({"order_id": ORDER.hex(), "from": "placed", "to": "delivered", "by": "order_deliver",
                                   "height": 12, "time": 1200, "tx": TX.hex(), "buyer": "00", "merchant": "00"})
    assert streamed == changes[1] and streamed.event_id == order_event_id(ORDER, 12, TX, "delivered")
    deadline = change_from_stream({"order_id": ORDER.hex(), "from": "delivered", "to": "completed", "by": "deadline",
                                   "height": 20, "time": 2000, "tx": None})
    assert deadline.event_id == changes[2].event_id and deadline.tx_hash is None


def test_history_after_a_height_and_webhook_data_without_the_delivery() -> None:
    changes = list(changes_from_history(order_json(), after_height=12))
    assert [change.to_state for change in changes] == ["delivered", "completed"]
    data = changes[0].webhook_data(order_json())
    assert "delivery" not in data["order"] and data["order"]["id"] == ORDER.hex()
    assert (data["from"], data["to"], data["by"], data["height"], data["tx"]) == ("placed", "delivered", "order_deliver",
                                                                                 12, TX.hex())
    assert changes[0].event_type == "order.delivered"
