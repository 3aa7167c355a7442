"""The event hub builds a block's events only when someone needs them (PROTOCOL §10 `/events`;
docs/performance.md): with no subscriber a final block's events are deferred; a new
subscription builds them first, in chain order, so that resuming with `Last-Event-ID`
replays exactly what an always-built hub would; deferred blocks that would have left the
history anyway are forgotten unbuilt and reported as a gap. `orders_named` lists every
order `block_events` reads, so the node can snapshot them as of the block.
"""

from __future__ import annotations

import hashlib

from marketplace_tx.chain.receipts import Receipt
from marketplace_tx.chain.transaction import sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from node.events import ChainEvent, EventFilter, EventHub, orders_named


def block_of(height: int, transactions: int) -> list[ChainEvent]:
    """A block's events: the block event, then one tx event per transaction."""
    events = [ChainEvent(height, 0, "block", {"height": height})]
    events += [ChainEvent(height, 1 + index, "tx", {"index": index}) for index in range(transactions)]
    return events


class Builder:
    """`build` functions that record when they run."""

    def __init__(self) -> None:
        self.built: list[int] = []

    def of(self, height: int, transactions: int):
        def build() -> list[ChainEvent]:
            self.built.append(height)
            return block_of(height, transactions)

        return build


def ids(events: list[ChainEvent]) -> list[str]:
    return [event.id for event in events]


def test_without_subscribers_nothing_is_built_until_someone_subscribes() -> None:
    hub, builder = EventHub(history_size=100), Builder()
    for height in (1, 2, 3):
        hub.publish_later(height, 1 + 2, builder.of(height, 2))
    assert builder.built == [] and len(hub.history) == 0 and hub.published == 0
    _, replay, gap = hub.subscribe(EventFilter(), (1, 2))
    assert builder.built == [1, 2, 3] and not gap
    assert ids(replay) == ["2:0", "2:1", "2:2", "3:0", "3:1", "3:2"]
    assert hub.published == 9


def test_deferred_and_eager_hubs_replay_the_same() -> None:
    eager, lazy, builder = EventHub(history_size=20), EventHub(history_size=20), Builder()
    eager.subscribe(EventFilter())  # a listener: events are built at once
    for height in range(1, 12):
        eager.publish_later(height, 1 + height % 4, builder.of(height, height % 4))
        lazy.publish_later(height, 1 + height % 4, builder.of(height, height % 4))
    for after in [(3, 1), (8, 0), (11, 3), (1, 0)]:
        _, eager_replay, eager_gap = eager.subscribe(EventFilter(), after)
        _, lazy_replay, lazy_gap = lazy.subscribe(EventFilter(), after)
        assert ids(lazy_replay) == ids(eager_replay) and lazy_gap == eager_gap, after


def test_with_a_subscriber_events_are_built_and_offered_at_once() -> None:
    hub, builder = EventHub(), Builder()
    hub.publish_later(1, 2, builder.of(1, 1))
    subscription, _, _ = hub.subscribe(EventFilter())
    assert builder.built == [1]
    hub.publish_later(2, 3, builder.of(2, 2))
    assert builder.built == [1, 2] and ids(subscription.take()) == ["2:0", "2:1", "2:2"]


def test_blocks_that_would_leave_the_history_are_forgotten_unbuilt_with_a_gap() -> None:
    hub, builder = EventHub(history_size=10), Builder()
    hub.subscribe(EventFilter())
    hub.publish_later(1, 3, builder.of(1, 2))  # built: someone listens
    hub.unsubscribe(next(iter(hub.subscriptions)))
    for height in range(2, 8):
        hub.publish_later(height, 4, builder.of(height, 3))  # 4 events each
    # Blocks 5, 6, 7 (12 events) fill the history of 10: blocks 2–4 and block 1 would be
    # pushed out, so they are never built.
    assert builder.built == [1] and [entry[0] for entry in hub.deferred] == [5, 6, 7]
    assert len(hub.history) == 0 and hub.forgotten_up_to is not None
    _, replay, gap = hub.subscribe(EventFilter(), (1, 2))
    assert gap and builder.built == [1, 5, 6, 7]
    assert [event.height for event in replay] == [5, 5, 6, 6, 6, 6, 7, 7, 7, 7]
    _, recent, recent_gap = hub.subscribe(EventFilter(), (6, 3))
    assert not recent_gap and ids(recent) == ["7:0", "7:1", "7:2", "7:3"]


def test_one_block_larger_than_the_history_is_still_built_when_asked() -> None:
    hub, builder = EventHub(history_size=5), Builder()
    hub.publish_later(1, 21, builder.of(1, 20))
    _, replay, gap = hub.subscribe(EventFilter(), (0, 0))
    assert builder.built == [1] and gap  # the history keeps the last 5 of its 21 events
    assert ids(replay) == ["1:16", "1:17", "1:18", "1:19", "1:20"]


def key(name: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(name.encode()).digest())


def test_orders_named_lists_every_order_the_events_read() -> None:
    buyer, order_id, other = key("buyer"), b"\x07" * 32, b"\x09" * 32
    place = sign_transaction(buyer, "c", "order_place", {"listing_id": b"\x01" * 32, "quantity": 1}, 0, 10)
    cancel = sign_transaction(buyer, "c", "order_cancel", {"order_id": order_id}, 1, 10)
    transfer = sign_transaction(buyer, "c", "transfer", {"to": key("x").address, "amount": 5}, 2, 10)
    settled = b"\x0b" * 32  # named only by an order event of a receipt
    receipts = [
        Receipt(True, events=({"type": "order_placed", "order_id": place.hash},)),
        Receipt(True, events=({"type": "order_state", "order_id": order_id},)),
        Receipt(True, events=({"type": "order_state", "order_id": settled}, {"type": "transfer", "order_id": b"\x03" * 32})),
    ]
    deadline = [{"type": "order_state", "order_id": other}, {"type": "points", "order_id": b"\x05" * 32}]
    assert orders_named([place, cancel, transfer], receipts, deadline) == {place.hash, order_id, other, settled}
    failed = [Receipt(False, "invalid_field"), receipts[1], Receipt(True)]
    assert orders_named([place, cancel, transfer], failed, []) == {order_id}  # a failed place makes no order


def test_events_built_after_the_fact_name_the_parties_as_of_their_block(tmp_path) -> None:
    """No stream is open while an order is placed, accepted and shipped; a carrier that
    then replays from the start sees the shipment but not the placing and acceptance,
    which happened before it was named (the order is read as of each block)."""
    from tests.e2e.node_process import NodeProcess
    from tests.integration.test_events_metrics_openapi import (
        BUYER,
        CARRIER,
        EVIDENCE,
        FUNDED,
        MERCHANT,
        PRICE,
        EventStream,
        Signer,
        txs_of,
    )

    with NodeProcess(tmp_path / "node", fund={who.address: FUNDED for who in (MERCHANT, BUYER, CARRIER)}) as node:
        signer, validator = Signer(node), node.validator_key
        signer.ok(*[signer.tx(validator, "role_grant", account=account.address, role=role, evidence_hash=EVIDENCE)
                    for account, role in ((MERCHANT, "merchant"), (CARRIER, "carrier"))])
        shop = signer.tx(MERCHANT, "shop_create", name="Later Teas", points_bps=100, max_redeem_bps=0)
        signer.ok(shop)
        listing = signer.tx(MERCHANT, "listing_create", shop_id=shop.hash, title="Oolong", price=PRICE, stock=5)
        signer.ok(listing)
        order = signer.tx(BUYER, "order_place", listing_id=listing.hash, quantity=1, max_unit_price=PRICE,
                          shipping=b"sealed")
        signer.ok(order)
        accept = signer.tx(MERCHANT, "order_accept", order_id=order.hash)
        signer.ok(accept)
        ship = signer.tx(MERCHANT, "order_ship", order_id=order.hash, carrier=CARRIER.address, tracking="L1")
        signer.ok(ship)
        with EventStream(node, f"?account={CARRIER.address.hex()}", last_event_id="0:0") as carrier_view, \
                EventStream(node, f"?order={order.hash.hex()}", last_event_id="0:0") as order_view:
            carrier_view.wait_for("the shipment", lambda e: e.kind == "tx" and e.data["hash"] == ship.hash.hex())
            order_view.wait_for("the shipment", lambda e: e.kind == "order" and e.data["to"] == "shipped")
            assert order.hash.hex() not in txs_of(carrier_view) and accept.hash.hex() not in txs_of(carrier_view)
            assert txs_of(order_view) == [tx.hash.hex() for tx in (order, accept, ship)]
            moves = [(e.data["from"], e.data["to"]) for e in order_view.events if e.kind == "order"]
            assert moves == [(None, "placed"), ("placed", "accepted"), ("accepted", "shipped")]
