"""The agent's handling of stream events (client/merchant/agent.py) over a stub node: an order
event goes to the outbox with the contract's id before the cursor moves past it, events of
other merchants or shops are skipped, and a `gap` hands the outbox every change in the
histories from the cursor's height with the ids the stream events had."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from client.events import NodeEvent
from client.merchant.agent import MerchantAgent
from client.merchant.config import MerchantConfig
from client.merchant.events import order_event_id
from marketplace_tx.primitives.crypto import KeyPair

MERCHANT = KeyPair.from_seed(bytes([4]) * 32)
SHOP = "dd" * 32
TX = "77" * 32


def completed_order(order_id: str, shop: str = SHOP) -> dict[str, Any]:
    return {"id": order_id, "state": "completed", "digital": False, "merchant": MERCHANT.address.hex(), "shop_id": shop,
            "listing_id": "ee" * 32, "escrow": 5, "delivery": None, "history": [
                {"event": "order_place", "state": "placed", "height": 10, "time": 1, "tx": "11" * 32},
                {"event": "order_accept", "state": "accepted", "height": 11, "time": 2, "tx": "22" * 32},
                {"event": "order_confirm", "state": "completed", "height": 14, "time": 3, "tx": TX}]}


class StubNode:
    def __init__(self, orders: list[dict[str, Any]]) -> None:
        self.by_id = {order["id"]: order for order in orders}

    def order(self, order_id: bytes) -> dict[str, Any]:
        return self.by_id[order_id.hex()]

    def orders(self, merchant: bytes, state: str | None = None, limit: int = 100, cursor: str | None = None) -> dict:
        chosen = [order for order in self.by_id.values() if state is None or order["state"] == state]
        return {"orders": chosen, "next": None}

    def status(self) -> dict[str, Any]:
        return {"latest_block_time": 5, "height": 42}


class RecordingOutbox:
    def __init__(self, cursor_of: Any) -> None:
        self.enqueued: list[tuple[str, str, int | None]] = []
        self.cursor_of = cursor_of

    def enqueue(self, event_id: str, event_type: str, data: dict[str, Any]) -> bool:
        self.enqueued.append((event_id, event_type, self.cursor_of()))
        return True


def agent_with(tmp_path: Path, orders: list[dict[str, Any]], shops: frozenset[bytes] = frozenset()) -> tuple:
    config = MerchantConfig(path=tmp_path / "m.toml", state_dir=tmp_path, shops=shops)
    agent = MerchantAgent(config, MERCHANT, None)
    agent.outbox = RecordingOutbox(lambda: agent.cursor.last_event_id)
    agent.client = StubNode(orders)  # type: ignore[assignment]
    return agent, agent.outbox


def stream_event(order: dict[str, Any], event_id: str = "14:2") -> NodeEvent:
    return NodeEvent(event_id, "order", {"order_id": order["id"], "from": "accepted", "to": "completed",
                                         "by": "order_confirm", "height": 14, "time": 3, "tx": TX,
                                         "buyer": "00" * 32, "merchant": order["merchant"]})


async def test_an_order_event_is_enqueued_before_the_cursor_moves(tmp_path: Path) -> None:
    order = completed_order("aa" * 32)
    agent, outbox = agent_with(tmp_path, [order])
    await agent._handle(stream_event(order))
    expected = order_event_id(bytes.fromhex(order["id"]), 14, bytes.fromhex(TX), "completed")
    assert outbox.enqueued == [(expected, "order.completed", None)]  # the cursor had not moved yet
    assert agent.cursor.last_event_id == "14:2"


async def test_events_of_other_merchants_or_shops_only_move_the_cursor(tmp_path: Path) -> None:
    mine, other_shop = completed_order("aa" * 32), completed_order("bb" * 32, shop="cc" * 32)
    agent, outbox = agent_with(tmp_path, [mine, other_shop], shops=frozenset({bytes.fromhex(SHOP)}))
    foreign = stream_event(mine, "15:0")
    foreign.data["merchant"] = "99" * 32
    await agent._handle(foreign)
    await agent._handle(stream_event(other_shop, "15:1"))
    await agent._handle(NodeEvent("15:2", "tx", {"hash": TX}))
    assert outbox.enqueued == [] and agent.cursor.last_event_id == "15:2"


async def test_a_gap_rebuilds_the_changes_from_the_cursors_height(tmp_path: Path) -> None:
    order = completed_order("aa" * 32)
    agent, outbox = agent_with(tmp_path, [order])
    agent.cursor.advance("11:0")
    await agent._handle(NodeEvent(None, "gap", {"last_event_id": "11:0", "oldest": "900:0"}))
    order_id = bytes.fromhex(order["id"])
    assert [(event_id, kind) for event_id, kind, _ in outbox.enqueued] == [
        (order_event_id(order_id, 11, bytes.fromhex("22" * 32), "accepted"), "order.accepted"),
        (order_event_id(order_id, 14, bytes.fromhex(TX), "completed"), "order.completed")]
    assert agent.cursor.last_event_id == "11:0"  # a control event has no id


async def test_a_dropped_stream_ends_the_connection(tmp_path: Path) -> None:
    from client.merchant.stream import StreamError

    agent, _ = agent_with(tmp_path, [])
    with pytest.raises(StreamError, match="dropped"):
        await agent._handle(NodeEvent(None, "dropped", {"reason": "behind"}))


async def test_a_first_start_anchors_the_cursor_at_the_nodes_height_and_persists_it(tmp_path: Path) -> None:
    agent, _ = agent_with(tmp_path, [])
    assert agent.cursor.last_event_id is None
    await agent._start_cursor()
    assert agent.cursor.last_event_id == "42:0"
    from client.merchant.cursor import Cursor

    assert Cursor(tmp_path).last_event_id == "42:0"  # on disk before any order is acted on
