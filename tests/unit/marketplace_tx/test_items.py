"""Unique items and provenance (R22): register, events, transfers, listing, reservation, sale."""

from __future__ import annotations

import pytest

from marketplace_tx.chain.receipts import Receipt
from marketplace_tx.primitives.crypto import KeyPair
from tests.unit.marketplace_tx.marketplace_fixtures import (
    BUYER,
    BUYER_2,
    CARRIER,
    INSPECTOR,
    MERCHANT,
    OUTSIDER,
    PRODUCER,
    Chain,
    Market,
    assert_fails,
    list_goods,
    new_market,
    open_shop,
    register_items,
)


def register(chain: Chain, who: KeyPair, item_id: str = "tea-001") -> Receipt:
    return chain.send(who, "item_register", {"item_id": item_id, "description": "pu-erh cake"})


# ---------------------------------------------------------------------- item_register


@pytest.mark.parametrize("who", [PRODUCER, MERCHANT], ids=["producer", "merchant"])
def test_producers_and_merchants_register_items(who: KeyPair) -> None:
    chain = Chain()
    receipt = chain.send(
        who,
        "item_register",
        {"item_id": "tea-001", "description": "cake", "metadata_hash": b"\x11" * 32},
    )
    assert receipt.ok
    item = chain.item("tea-001")
    assert (item.owner, item.custodian, item.producer, item.registered_at) == (
        who.address,
        who.address,
        who.address,
        chain.time,
    )
    assert item.listing_id is None and item.order_id is None and item.metadata_hash == b"\x11" * 32
    assert chain.item_history("tea-001") == [
        {
            "kind": "registered",
            "actor": who.address,
            "data_hash": b"\x11" * 32,
            "height": chain.height,
            "time": chain.time,
            "tx": chain.last_tx_hash,
        },
    ]


@pytest.mark.parametrize(
    "who", [BUYER, CARRIER, INSPECTOR, OUTSIDER], ids=["buyer", "carrier", "inspector", "outsider"]
)
def test_other_roles_cannot_register_items(who: KeyPair) -> None:
    assert_fails(register(Chain(), who), "forbidden", "sender")


def test_an_item_id_is_registered_once() -> None:
    chain = Chain()
    assert register(chain, PRODUCER).ok
    assert_fails(register(chain, MERCHANT), "already_exists", "payload.item_id")
    assert_fails(register(chain, OUTSIDER), "forbidden", "sender")  # authority beats already_exists
    assert chain.item("tea-001").owner == PRODUCER.address


@pytest.mark.parametrize("item_id", ["", "has space", "x" * 65, "thé", "a/b", "a\x00b"])
def test_malformed_item_ids_are_invalid_field_at_admission(item_id: str) -> None:
    chain = Chain()
    payload = {"item_id": item_id, "description": "d"}
    assert chain.admit(PRODUCER, "item_register", payload) == "invalid_field"
    assert_fails(
        chain.execute(PRODUCER, "item_register", payload), "invalid_field", "payload.item_id"
    )


def test_the_full_item_id_alphabet_is_accepted() -> None:
    chain = Chain()
    item_id = "AZaz09._:-" + "x" * 54
    assert chain.admit(PRODUCER, "item_register", {"item_id": item_id, "description": "d"}) is None
    assert register(chain, PRODUCER, item_id).ok


# ---------------------------------------------------------------------- item_event


@pytest.mark.parametrize("kind", ["registered", "transfer", "listed", "sold"])
def test_the_chains_own_event_kinds_are_invalid_field_at_admission(kind: str) -> None:
    chain = Chain()
    register_items(chain, PRODUCER, "tea-001")
    payload = {"item_id": "tea-001", "kind": kind, "location": "Pu'er"}
    assert chain.admit(PRODUCER, "item_event", payload) == "invalid_field"
    assert_fails(chain.execute(PRODUCER, "item_event", payload), "invalid_field", "payload.kind")


def test_owner_custodian_and_inspectors_record_events() -> None:
    chain = Chain()
    register_items(chain, PRODUCER, "tea-001")
    chain.must(
        PRODUCER,
        "item_transfer",
        {"item_id": "tea-001", "to": CARRIER.address, "custody_only": True},
    )
    for who, kind in ((PRODUCER, "pressed"), (CARRIER, "in_transit"), (INSPECTOR, "inspected")):
        chain.must(
            who,
            "item_event",
            {
                "item_id": "tea-001",
                "kind": kind,
                "location": "Yunnan",
                "data_hash": b"\x22" * 32,
                "note": "ok",
            },
        )
        assert chain.item_history("tea-001")[-1] == {
            "kind": kind,
            "actor": who.address,
            "location": "Yunnan",
            "data_hash": b"\x22" * 32,
            "note": "ok",
            "height": chain.height,
            "time": chain.time,
            "tx": chain.last_tx_hash,
        }
    for who in (BUYER, MERCHANT, OUTSIDER):
        receipt = chain.send(who, "item_event", {"item_id": "tea-001", "kind": "x", "location": ""})
        assert_fails(receipt, "forbidden", "sender")
    receipt = chain.send(OUTSIDER, "item_event", {"item_id": "nope", "kind": "x", "location": ""})
    assert_fails(receipt, "not_found", "payload.item_id")  # existence beats authority
    assert [entry["kind"] for entry in chain.item_history("tea-001")] == [
        "registered",
        "transfer",
        "pressed",
        "in_transit",
        "inspected",
    ]


# ---------------------------------------------------------------------- item_transfer


def transfer(chain: Chain, who: KeyPair, to: KeyPair, custody_only: bool, item_id: str = "tea-001") -> Receipt:
    return chain.send(
        who, "item_transfer", {"item_id": item_id, "to": to.address, "custody_only": custody_only}
    )


def test_custody_and_ownership_transfers() -> None:
    chain = Chain()
    register_items(chain, PRODUCER, "tea-001")
    assert transfer(chain, PRODUCER, CARRIER, True).ok
    assert (chain.item("tea-001").owner, chain.item("tea-001").custodian) == (
        PRODUCER.address,
        CARRIER.address,
    )
    assert_fails(
        transfer(chain, CARRIER, BUYER, False), "forbidden", "sender"
    )  # custodian: custody only
    assert_fails(transfer(chain, OUTSIDER, BUYER, True), "forbidden", "sender")
    assert transfer(chain, CARRIER, MERCHANT, True).ok
    assert transfer(chain, PRODUCER, MERCHANT, False).ok
    item = chain.item("tea-001")
    assert (item.owner, item.custodian) == (MERCHANT.address, MERCHANT.address)
    assert_fails(transfer(chain, PRODUCER, BUYER, True), "forbidden", "sender")  # no longer owner
    assert chain.item_history("tea-001")[-1] == {
        "kind": "transfer",
        "actor": PRODUCER.address,
        "to": MERCHANT.address,
        "custody_only": False,
        "height": chain.height - 1,
        "time": chain.time - chain.step_ms,
        "tx": chain.item_history("tea-001")[-1]["tx"],
    }
    assert_fails(transfer(chain, OUTSIDER, BUYER, True, "nope"), "not_found", "payload.item_id")


# ---------------------------------------------------------------------- items in listings


def item_market(*item_ids: str) -> Market:
    return new_market(item_ids=item_ids or ("c", "a", "b"))


def test_listing_items_attaches_them_with_a_listed_entry() -> None:
    market = item_market()
    chain = market.chain
    listing = chain.listing(market.listing_id)
    assert (listing.item_listing, listing.item_ids, listing.stock) == (True, ("c", "a", "b"), 3)
    for item_id in ("c", "a", "b"):
        assert chain.item(item_id).listing_id == market.listing_id
        entry = chain.item_history(item_id)[-1]
        assert (entry["kind"], entry["listing_id"], entry["actor"]) == (
            "listed",
            market.listing_id,
            MERCHANT.address,
        )


def test_the_seller_must_own_and_hold_each_item() -> None:
    chain = Chain()
    shop_id = open_shop(chain)
    register_items(chain, PRODUCER, "theirs")
    register_items(chain, MERCHANT, "mine", "away")
    chain.must(
        MERCHANT, "item_transfer", {"item_id": "away", "to": CARRIER.address, "custody_only": True}
    )
    payload = {"shop_id": shop_id, "title": "t", "price": 5, "stock": 2}
    receipt = chain.send(MERCHANT, "listing_create", {**payload, "item_ids": ["mine", "theirs"]})
    assert_fails(receipt, "forbidden", "payload.item_ids[1]")
    receipt = chain.send(MERCHANT, "listing_create", {**payload, "item_ids": ["away", "mine"]})
    assert_fails(receipt, "forbidden", "payload.item_ids[0]")
    receipt = chain.send(MERCHANT, "listing_create", {**payload, "item_ids": ["mine", "ghost"]})
    assert_fails(receipt, "not_found", "payload.item_ids[1]")


def test_an_item_in_another_active_listing_is_invalid_state() -> None:
    market = item_market("x", "y")
    chain = market.chain
    register_items(chain, MERCHANT, "z")
    receipt = chain.send(
        MERCHANT,
        "listing_create",
        {"shop_id": market.shop_id, "title": "t", "price": 5, "stock": 2, "item_ids": ["z", "y"]},
    )
    assert_fails(receipt, "invalid_state", "payload.item_ids[1]")
    assert chain.item("z").listing_id is None  # nothing of the failed listing stayed


def test_stock_must_equal_the_number_of_items() -> None:
    chain = Chain()
    shop_id = open_shop(chain)
    register_items(chain, MERCHANT, "x", "y")
    for stock in (0, 1, 3):
        receipt = chain.send(
            MERCHANT,
            "listing_create",
            {"shop_id": shop_id, "title": "t", "price": 5, "stock": stock, "item_ids": ["x", "y"]},
        )
        assert_fails(receipt, "invalid_field", "payload.stock")
    receipt = chain.send(
        MERCHANT,
        "listing_create",
        {"shop_id": shop_id, "title": "t", "price": 5, "stock": 2, "item_ids": ["x", "x"]},
    )
    assert_fails(receipt, "invalid_field", "payload.item_ids")


@pytest.mark.parametrize("custody_only", [True, False])
def test_listed_items_cannot_be_transferred(custody_only: bool) -> None:
    market = item_market("x")
    chain = market.chain
    assert_fails(
        transfer(chain, MERCHANT, BUYER, custody_only, "x"), "invalid_state", "payload.item_id"
    )
    assert_fails(
        transfer(chain, OUTSIDER, BUYER, custody_only, "x"), "forbidden", "sender"
    )  # authority first
    market.place()
    assert_fails(
        transfer(chain, MERCHANT, BUYER, custody_only, "x"), "invalid_state", "payload.item_id"
    )


def test_orders_reserve_the_first_unreserved_items_in_list_order() -> None:
    market = item_market("c", "a", "b", "d")
    chain = market.chain
    first = market.place(BUYER, 2)
    assert chain.order(first).item_ids == ("c", "a")
    assert chain.item("c").order_id == first and chain.item("a").order_id == first
    second = market.place(BUYER_2, 1)
    assert chain.order(second).item_ids == ("b",)
    listing = chain.listing(market.listing_id)
    assert (listing.stock, listing.reserved_items) == (1, ("c", "a", "b"))
    chain.must(BUYER, "order_cancel", {"order_id": first})
    listing = chain.listing(market.listing_id)
    assert (listing.stock, listing.item_ids, listing.reserved_items) == (
        3,
        ("c", "a", "b", "d"),
        ("b",),
    )
    third = market.place(BUYER, 2)
    assert chain.order(third).item_ids == ("c", "a")
    assert_fails(
        chain.send(BUYER, "order_place", market.place_payload(2)),
        "out_of_stock",
        "payload.quantity",
    )


@pytest.mark.parametrize("by_deadline", [False, True], ids=["confirmed", "by_deadline"])
def test_completion_hands_the_items_to_the_buyer(by_deadline: bool) -> None:
    market = item_market("c", "a", "b")
    chain = market.chain
    order_id = market.order_in("delivered", quantity=2)
    if by_deadline:
        chain.advance_to(chain.order(order_id).deadline)  # type: ignore[arg-type]
    else:
        chain.must(BUYER, "order_confirm", {"order_id": order_id})
    assert chain.order(order_id).state == "completed"
    for item_id in ("c", "a"):
        item = chain.item(item_id)
        assert (item.owner, item.custodian, item.listing_id, item.order_id) == (
            BUYER.address,
            BUYER.address,
            None,
            None,
        )
        entry = chain.item_history(item_id)[-1]
        assert (entry["kind"], entry["order_id"], entry["to"], entry["time"]) == (
            "sold",
            order_id,
            BUYER.address,
            chain.time,
        )
    listing = chain.listing(market.listing_id)
    assert (listing.item_ids, listing.reserved_items, listing.stock, listing.sold) == (
        ("b",),
        (),
        1,
        2,
    )
    assert chain.item("b").owner == MERCHANT.address
    assert transfer(chain, BUYER, BUYER_2, False, "c").ok  # the buyer owns it now


@pytest.mark.parametrize("ending", ["cancelled", "rejected", "expired", "refunded", "resolved"])
def test_every_other_ending_releases_the_items(ending: str) -> None:
    market = item_market("c", "a", "b")
    chain = market.chain
    order_id = market.order_in(ending, quantity=2)
    assert chain.order(order_id).item_ids == ("c", "a")
    for item_id in ("c", "a"):
        item = chain.item(item_id)
        assert (item.owner, item.custodian, item.listing_id, item.order_id) == (
            MERCHANT.address,
            MERCHANT.address,
            market.listing_id,
            None,
        )
        assert "sold" not in [entry["kind"] for entry in chain.item_history(item_id)]
    listing = chain.listing(market.listing_id)
    assert (listing.item_ids, listing.reserved_items, listing.stock, listing.sold) == (
        ("c", "a", "b"),
        (),
        3,
        0,
    )
    assert chain.order(market.place(BUYER_2, 3)).item_ids == ("c", "a", "b")


def test_deactivating_an_item_listing_frees_its_unreserved_items() -> None:
    market = item_market("c", "a", "b")
    chain = market.chain
    order_id = market.place(BUYER, 1)  # reserves "c"
    chain.must(MERCHANT, "listing_update", {"listing_id": market.listing_id, "active": False})
    listing = chain.listing(market.listing_id)
    assert (listing.item_ids, listing.stock) == (("c",), 0)
    assert chain.item("a").listing_id is None and chain.item("c").listing_id == market.listing_id
    assert transfer(chain, MERCHANT, CARRIER, True, "a").ok
    assert_fails(transfer(chain, MERCHANT, CARRIER, True, "c"), "invalid_state", "payload.item_id")
    # "b" may go into another listing; "c" may not while its order is open
    other = list_goods(chain, market.shop_id, item_ids=("b",), stock=1)
    assert chain.item("b").listing_id == other
    chain.must(BUYER, "order_cancel", {"order_id": order_id})
    assert chain.item("c").listing_id is None  # the inactive listing does not take it back
    listing = chain.listing(market.listing_id)
    assert (listing.item_ids, listing.reserved_items, listing.stock) == ((), (), 0)


def test_a_full_history_refuses_new_entries_but_keeps_room_for_a_sale() -> None:
    """The `h` key's sequence is 4 bytes (R35): transactions stop one entry short of 2^32,
    so that the `sold` entry of a completion (which cannot fail, R15) always fits."""
    from marketplace_tx.rules.items import MAX_HISTORY, store_item
    from marketplace_tx.rules.state import State
    from marketplace_tx.speedups import evolve

    chain = Chain()
    assert register(chain, PRODUCER).ok
    state = State(chain.base)
    store_item(state, "tea-001", evolve(chain.item("tea-001"), history_length=MAX_HISTORY - 2))
    chain.base.apply(state.changes())
    event = {"item_id": "tea-001", "kind": "inspected", "location": "Kunming"}
    assert chain.send(PRODUCER, "item_event", event).ok  # the entry at 2^32 − 2
    assert chain.item("tea-001").history_length == MAX_HISTORY - 1
    assert_fails(chain.send(PRODUCER, "item_event", event), "invalid_state", "payload.item_id")
    assert_fails(chain.send(PRODUCER, "item_transfer", {"item_id": "tea-001", "to": BUYER.address,
                                                         "custody_only": False}), "invalid_state", "payload.item_id")
