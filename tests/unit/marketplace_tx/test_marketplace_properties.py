"""Invariants of the marketplace under random action sequences (R14–R17, R20, R22, R11, R41).

A hypothesis state machine sends random marketplace transactions (valid and invalid,
from the right party and from the wrong one) and jumps the clock at random, one block
per step; after every block it checks:

- conservation (R17): every balance plus every order's escrow equals the genesis supply;
- listings: stock ≥ 0, and an item listing's stock equals its unreserved attached items;
- deadlines (R15, R16): every non-terminal order has a deadline after the last block
  time and exactly its schedule key; terminal orders have neither;
- reputation (R20): the counters equal a recount from the orders themselves;
- failed transactions (R11): a failed receipt changed nothing but the fee and nonce;
- digital goods (R41): an order is digital iff its listing is; only a digital order holds a
  delivery, and is never shipped or returned;
- stock: a stock listing holds its initial stock plus the accepted `stock_delta`s minus the
  units of open orders, of completed ones, and of every order that delivered content
  (a delivered digital order never returns stock, however it ends).

When a run ends, one block after every window (R15) ends every order (R16: funds are never
stuck, every digital order ends), and the invariants hold once more.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.accounts import load_account
from marketplace_tx.rules.order_records import TERMINAL_STATES, Order
from marketplace_tx.rules.records import record_from_map
from marketplace_tx.rules.reputation import Reputation, load_reputation, trust_score
from marketplace_tx.rules.state import State
from marketplace_tx.rules.state_keys import (
    DEADLINE,
    ITEM,
    LISTING,
    ORDER,
    SHOP,
    account_key,
    deadline_key,
    merchant_reputation_key,
    shop_reputation_key,
)
from tests.unit.marketplace_tx.marketplace_fixtures import (
    ARBITER,
    ARBITER_2,
    BUYER,
    BUYER_2,
    BUYER_3,
    CARRIER,
    CARRIER_2,
    MERCHANT,
    MERCHANT_2,
    OUTSIDER,
    VALIDATOR,
    Chain,
    list_goods,
    open_shop,
    register_items,
)

BUYERS = (BUYER, BUYER, BUYER_2, BUYER_3, OUTSIDER, BUYER, BUYER_2, BUYER_3, MERCHANT)
EVERYONE = (
    BUYER,
    BUYER_2,
    BUYER_3,
    OUTSIDER,
    MERCHANT,
    MERCHANT_2,
    CARRIER,
    CARRIER_2,
    ARBITER,
    ARBITER_2,
)
HOUR = 3_600_000
DAY = 24 * HOUR
JUMPS = (1, 1_000, HOUR, DAY, 2 * DAY, 3 * DAY, 5 * DAY, 8 * DAY, 15 * DAY, 31 * DAY)
MISSING = object()
NEXT_STEPS = {
    "placed": ("accept", "ship", "accept", "cancel", "reject"),
    "accepted": ("ship", "ship", "reject", "refund_part", "refund_all"),
    "shipped": ("deliver", "in_transit", "confirm", "return", "dispute", "refund_part"),
    "delivered": ("confirm", "return", "dispute", "refund_part", "refund_all"),
    "return_requested": ("refund_part", "refund_all", "confirm", "dispute", "merchant_dispute"),
    "disputed": ("resolve", "resolve", "refund_part", "resolve", "refund_all"),
}
"""Actions worth trying in each state (most of them valid there)."""
DIGITAL_NEXT_STEPS = {
    **NEXT_STEPS,
    "placed": ("deliver_digital", "accept", "deliver_digital", "cancel", "reject"),
    "accepted": ("deliver_digital", "deliver_digital", "reject", "refund_part", "ship"),
    "delivered": ("confirm", "dispute", "refund_part", "refund_all", "return"),
}
"""The same for a digital order (R41): delivered by `order_deliver`, never shipped nor returned."""
CONTENT = bytes(range(64))
"""What `order_deliver` carries (opaque to the chain)."""
LAST_WINDOW_MS = 40 * DAY
"""Longer than every R15 window of the default parameters."""


@cache
def snapshot() -> Chain:
    """Two shops (one with an arbiter), a stock listing and a digital one (R41) in each, and an
    item listing."""
    chain = Chain()
    shop_a = open_shop(chain, MERCHANT, (ARBITER,), points_bps=500, max_redeem_bps=5000)
    shop_b = open_shop(chain, MERCHANT_2, (), points_bps=100, max_redeem_bps=10000)
    list_goods(chain, shop_a, MERCHANT, price=1_000, stock=1_000)
    register_items(chain, MERCHANT, "i1", "i2", "i3", "i4")
    list_goods(chain, shop_a, MERCHANT, price=2_500, item_ids=("i1", "i2", "i3", "i4"), stock=4)
    list_goods(chain, shop_b, MERCHANT_2, price=777, stock=1_000)
    list_goods(chain, shop_a, MERCHANT, price=3_000, stock=5, digital=True)
    list_goods(chain, shop_b, MERCHANT_2, price=450, stock=1_000, digital=True)
    return chain


def decoded(chain: Chain, prefix: bytes) -> dict[bytes, dict[str, Any]]:
    return {
        key[1:]: codec.decode(value)
        for key, value in chain.base.values.items()
        if key[:1] == prefix
    }


def all_orders(chain: Chain) -> dict[bytes, Order]:
    return {
        order_id: record_from_map(Order, value) for order_id, value in decoded(chain, ORDER).items()
    }


# ---------------------------------------------------------------------- invariants


def check_conservation(chain: Chain) -> None:
    assert chain.total_money() == chain.genesis.total_supply()


def check_listings(chain: Chain, orders: dict[bytes, Order]) -> None:
    items = decoded(chain, ITEM)
    reserving = {item_id: order_id for order_id, order in orders.items() if order.state not in TERMINAL_STATES
                 for item_id in order.item_ids}
    for listing_id, listing in decoded(chain, LISTING).items():
        assert listing["stock"] >= 0
        if not listing["item_listing"]:
            continue
        attached = listing.get("item_ids", [])
        reserved = listing.get("reserved_items", [])
        assert set(reserved) <= set(attached)
        assert listing["stock"] == len([item_id for item_id in attached if item_id not in reserved])
        for item_id in attached:
            item = items[item_id.encode()]
            assert item["listing_id"] == listing_id
            assert ("order_id" in item) == (item_id in reserved)
            assert item.get("order_id") == reserving.get(item_id)
    for item_id, item in items.items():
        assert item.get("order_id") == reserving.get(item_id.decode())  # only open orders hold items

def check_deadlines(chain: Chain, orders: dict[bytes, Order]) -> None:
    scheduled = {key for key in chain.base.values if key[:1] == DEADLINE}
    expected = set()
    for order_id, order in orders.items():
        if order.state in TERMINAL_STATES:
            assert order.deadline is None and order.escrow == 0
        else:
            assert order.deadline is not None and order.deadline > chain.time
            expected.add(deadline_key(order.deadline, order_id))
    assert scheduled == expected


def check_digital_goods(chain: Chain, orders: dict[bytes, Order]) -> None:
    """R41: the flag follows the listing; only digital orders hold content, never shipped or returned."""
    listings = decoded(chain, LISTING)
    for order in orders.values():
        assert bool(order.digital) == bool(listings[order.listing_id].get("digital"))
        assert order.digital in (True, None)
        if order.digital:
            assert order.carrier is None and order.requested_at is None
            assert all(entry["event"] != "return_request" for entry in order.history)
        else:
            assert order.delivery is None
        if order.delivery is not None:
            assert order.delivered_at is not None
            assert order.state in ("delivered", "disputed", "completed", "refunded", "resolved")


def check_stock(chain: Chain, orders: dict[bytes, Order], initial: dict[bytes, int],
                deltas: dict[bytes, int]) -> None:
    """Stock = initial + accepted deltas − units held by open, completed or delivered orders."""
    held: dict[bytes, int] = defaultdict(int)
    sold: dict[bytes, int] = defaultdict(int)
    for order in orders.values():
        if order.state not in TERMINAL_STATES or order.state == "completed" or order.delivery is not None:
            held[order.listing_id] += order.quantity
        if order.state == "completed":
            sold[order.listing_id] += order.quantity
    for listing_id, listing in decoded(chain, LISTING).items():
        assert listing.get("sold", 0) == sold[listing_id]
        if not listing["item_listing"]:
            assert listing["stock"] == initial[listing_id] + deltas[listing_id] - held[listing_id]


def recount(orders: dict[bytes, Order], arbiter_fee_bps: int) -> dict[bytes, dict[str, int]]:
    """Reputation counters by reputation key, from the orders alone (R20)."""
    counters: dict[bytes, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for order in orders.values():
        found: dict[str, int] = {"orders_placed": 1, "revenue": order.merchant_paid}
        if order.state == "completed":
            found.update(orders_completed=1, units_sold=order.quantity)
        elif order.state in ("refunded", "expired"):
            found[f"orders_{order.state}"] = 1
        elif order.state == "resolved":
            partial = sum(
                entry["amount"] for entry in order.history if entry["event"] == "order_refund"
            )
            escrow = order.total_price - order.redeem_points - partial
            buyer_amount = order.refunded - partial
            assert order.merchant_paid == escrow - escrow * arbiter_fee_bps // 10000 - buyer_amount
            found["disputes_lost" if 2 * buyer_amount > escrow else "disputes_won"] = 1
        if order.review is not None:
            found.update(rating_count=1, rating_sum=order.review["rating"])
        for key in (shop_reputation_key(order.shop_id), merchant_reputation_key(order.merchant)):
            for name, value in found.items():
                counters[key][name] += value
    return counters


def check_reputation(chain: Chain, orders: dict[bytes, Order]) -> None:
    counted = recount(orders, chain.params.arbiter_fee_bps)
    state = chain.state()
    keys = {shop_reputation_key(shop_id) for shop_id in decoded(chain, SHOP)}
    keys |= {merchant_reputation_key(who.address) for who in (MERCHANT, MERCHANT_2)}
    for key in keys:
        values = counted.get(key, {})
        expected = Reputation(**values)
        average = expected.rating_sum * 100 // expected.rating_count if expected.rating_count else 0
        expected = Reputation(**{**values, "avg_rating_x100": average})
        expected = Reputation(**{**expected.__dict__, "trust_score": trust_score(expected)})
        stored = load_reputation(state, key)
        assert stored == expected
        assert 0 <= stored.trust_score <= 1000


# ---------------------------------------------------------------------- the machine

order_picks = st.integers(min_value=0, max_value=10**6)
steps = st.integers(min_value=1, max_value=5_000)
STEP_WEIGHTS = (
    ("progress",) * 5
    + ("place",) * 3
    + ("order_action",) * 2
    + ("advance", "administer", "advance")
)
"""One rule picks among these (a single rule keeps hypothesis from switching whole kinds off)."""


class Marketplace(RuleBasedStateMachine):
    """Random marketplace traffic, one transaction or one clock jump per block."""

    chain: Chain
    order_ids: list[bytes]

    @initialize()
    def start(self) -> None:
        self.chain = snapshot().fork()
        self.order_ids = []
        self.listing_ids = sorted(decoded(self.chain, LISTING))
        self.initial_stock = {listing_id: self.chain.listing(listing_id).stock for listing_id in self.listing_ids}
        self.stock_deltas: dict[bytes, int] = defaultdict(int)
        self.shop_ids = sorted(decoded(self.chain, SHOP))

    # -------------------------------------------------------------- sending

    def pick_order(self, pick: int) -> bytes:
        return (
            self.order_ids[pick % len(self.order_ids)]
            if self.order_ids
            else bytes([pick % 256]) * 32
        )

    def send(self, who: KeyPair, tx_type: str, payload: dict[str, Any], step: int) -> bool:
        """Commit the tx alone in a block `step` ms later; check that a failure changed only
        fee and nonce. Returns whether it succeeded."""
        chain = self.chain
        time = chain.time + step
        tx = chain.sign(who, tx_type, payload)
        baseline = chain.preview([], time).changes  # the deadlines of this block alone
        sender_before = load_account(State(_Overlay(chain.base.values, baseline)), who.address)
        proposer_before = load_account(
            State(_Overlay(chain.base.values, baseline)), VALIDATOR.address
        )
        result = chain.block([tx], time)
        receipt = result.receipts[0]
        if not receipt.ok:
            fee_keys = {account_key(who.address), account_key(VALIDATOR.address)}
            for key in set(result.changes) | set(baseline):
                if key not in fee_keys:
                    assert result.changes.get(key, MISSING) == baseline.get(key, MISSING), (
                        tx_type,
                        receipt,
                    )
            state = chain.state()
            sender = load_account(state, who.address)
            assert (sender.balance, sender.nonce) == (
                sender_before.balance - tx.fee,
                sender_before.nonce + 1,
            )
            if who != VALIDATOR:
                assert (
                    load_account(state, VALIDATOR.address).balance
                    == proposer_before.balance + tx.fee
                )
        elif tx_type == "order_place":
            self.order_ids.append(tx.hash)
        return receipt.ok

    # -------------------------------------------------------------- rules

    def place(
        self, buyer: KeyPair, listing: int, quantity: int, redeem: int, fault: str | None, step: int
    ) -> None:
        listing_id = self.listing_ids[listing]
        record = self.chain.listing(listing_id)
        arbiters = self.chain.shop(record.shop_id).arbiters
        payload: dict[str, Any] = {
            "listing_id": listing_id,
            "quantity": quantity,
            "max_unit_price": record.price - (fault == "price"),
            "shipping": b"addr",
        }
        arbiter = arbiters[0] if arbiters else None
        arbiter = {
            "no_arbiter": None,
            "other_arbiter": ARBITER_2.address,
            "buyer_arbiter": BUYER_2.address,
        }.get(fault or "", arbiter)
        if arbiter is not None:
            payload["arbiter"] = arbiter
        if redeem:
            payload["redeem_points"] = redeem
        self.send(buyer, "order_place", payload, step)

    def act(self, pick: int, action: str, intruder: KeyPair | None, share: int, step: int) -> None:
        """The party entitled to `action` (or `intruder`) takes it on an order."""
        order_id = self.pick_order(pick)
        known = order_id in self.order_ids
        order = self.chain.order(order_id) if known else None
        escrow = order.escrow if order else 10
        available = escrow - escrow * self.chain.params.arbiter_fee_bps // 10000
        buyer = _key_of(order.buyer) if order else BUYER
        merchant = _key_of(order.merchant) if order else MERCHANT
        carrier = _key_of(order.carrier) if order and order.carrier else CARRIER
        arbiter = _key_of(order.arbiter) if order and order.arbiter else ARBITER
        who, tx_type, payload = {
            "accept": (merchant, "order_accept", {}),
            "reject": (merchant, "order_reject", {"reason": "no"}),
            "cancel": (buyer, "order_cancel", {}),
            "ship": (merchant, "order_ship", {"carrier": CARRIER.address, "tracking": "T"}),
            "ship_badly": (merchant, "order_ship", {"carrier": buyer.address, "tracking": "T"}),
            "deliver": (carrier, "shipment_update", {"status": "delivered", "location": "door"}),
            "deliver_digital": (merchant, "order_deliver", {"content": CONTENT}),
            "in_transit": (carrier, "shipment_update", {"status": "in_transit", "location": "hub"}),
            "confirm": (buyer, "order_confirm", {}),
            "return": (buyer, "return_request", {"reason": "r"}),
            "refund_part": (merchant, "order_refund", {"amount": max(1, escrow * share // 100)}),
            "refund_all": (merchant, "order_refund", {"amount": max(1, escrow)}),
            "refund_over": (merchant, "order_refund", {"amount": escrow + 1}),
            "dispute": (buyer, "dispute_open", {"reason": "r"}),
            "merchant_dispute": (merchant, "dispute_open", {"reason": "r"}),
            "resolve": (
                arbiter,
                "dispute_resolve",
                {"buyer_amount": available * min(share, 100) // 100, "ruling": "r"},
            ),
            "resolve_over": (
                arbiter,
                "dispute_resolve",
                {"buyer_amount": available + 1, "ruling": "r"},
            ),
            "review": (buyer, "review_submit", {"rating": 1 + share % 5}),
            "reply": (merchant, "review_reply", {"text": "thanks"}),
        }[action]
        self.send(intruder or who, tx_type, {"order_id": order_id, **payload}, step)

    ORDER_ACTIONS = (
        "accept",
        "reject",
        "cancel",
        "ship",
        "ship_badly",
        "deliver",
        "deliver_digital",
        "in_transit",
        "confirm",
        "return",
        "refund_part",
        "refund_all",
        "refund_over",
        "dispute",
        "merchant_dispute",
        "resolve",
        "resolve_over",
        "review",
        "reply",
    )
    INTRUDERS = (None,) * 8 + EVERYONE

    def order_action(
        self, pick: int, action: str, intruder: KeyPair | None, share: int, step: int
    ) -> None:
        self.act(pick, action, intruder, share, step)

    def progress(self, pick: int, choice: int, share: int, step: int) -> None:
        """Move a live order along one of its own transitions (so that sequences get deep)."""
        live = [
            order_id
            for order_id in self.order_ids
            if self.chain.order(order_id).state in NEXT_STEPS
        ]
        if not live:
            return
        order_id = live[pick % len(live)]
        order = self.chain.order(order_id)
        steps = (DIGITAL_NEXT_STEPS if order.digital else NEXT_STEPS)[order.state]
        self.act(self.order_ids.index(order_id), steps[choice % len(steps)], None, share, step)

    def administer(
        self,
        kind: str,
        index: int,
        owner: bool,
        delta: int,
        change: str,
        points_bps: int,
        to: KeyPair,
        custody_only: bool,
        step: int,
    ) -> None:
        """A merchant (or an intruder) updates a listing or shop, or someone moves an item."""
        if kind == "listing":
            listing_id = self.listing_ids[index % len(self.listing_ids)]
            shop = self.chain.shop(self.chain.listing(listing_id).shop_id)
            payload: dict[str, Any] = {"listing_id": listing_id}
            if change == "stock":
                payload["stock_delta"] = delta
            elif change == "price":
                payload["price"] = max(1, self.chain.listing(listing_id).price + delta * 100)
            else:
                payload["active"] = change == "activate"
            if self.send(_key_of(shop.owner) if owner else OUTSIDER, "listing_update", payload, step):
                self.stock_deltas[listing_id] += payload.get("stock_delta", 0)
        elif kind == "shop":
            shop_id = self.shop_ids[index % len(self.shop_ids)]
            payload = {"shop_id": shop_id, "points_bps": points_bps, "open": change != "deactivate"}
            self.send(
                _key_of(self.chain.shop(shop_id).owner) if owner else OUTSIDER,
                "shop_update",
                payload,
                step,
            )
        else:
            item_id = f"i{index % 4 + 1}"
            holder = _key_of(self.chain.item(item_id).owner) if owner else BUYER_2
            payload = {"item_id": item_id, "to": to.address, "custody_only": custody_only}
            self.send(holder, "item_transfer", payload, step)

    def advance(self, jump: int, exact: int | None) -> None:
        schedule = self.chain.schedule()
        if exact is not None and schedule and schedule[0][0] + exact > self.chain.time:
            self.chain.advance_to(schedule[0][0] + exact)  # exactly at (or 1 ms before) a deadline
        else:
            self.chain.advance(jump)

    ARGUMENTS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
        "place": {
            "buyer": st.sampled_from(BUYERS),
            "listing": st.integers(0, 4),
            "quantity": st.integers(1, 3),
            "redeem": st.sampled_from((0,) * 8 + (10, 100, 400, 10**6)),
            "fault": st.sampled_from(
                (None,) * 6 + ("no_arbiter", "other_arbiter", "buyer_arbiter", "price")
            ),
            "step": steps,
        },
        "order_action": {
            "pick": order_picks,
            "action": st.sampled_from(ORDER_ACTIONS),
            "intruder": st.sampled_from(INTRUDERS),
            "share": st.integers(0, 100),
            "step": steps,
        },
        "progress": {
            "pick": order_picks,
            "choice": st.integers(0, 4),
            "share": st.integers(0, 100),
            "step": steps,
        },
        "administer": {
            "kind": st.sampled_from(("listing", "listing", "shop", "item")),
            "index": st.integers(0, 4),
            "owner": st.sampled_from((True, True, False)),
            "delta": st.integers(-4, 4),
            "change": st.sampled_from(("stock", "stock", "price", "activate", "deactivate")),
            "points_bps": st.sampled_from((0, 100, 2500)),
            "to": st.sampled_from((BUYER, CARRIER)),
            "custody_only": st.booleans(),
            "step": steps,
        },
        "advance": {"jump": st.sampled_from(JUMPS), "exact": st.sampled_from((None, None, 0, -1))},
    }
    """The arguments of each kind of step."""

    @rule(data=st.data())
    def one_block(self, data: st.DataObject) -> None:
        """One block: a kind of step chosen by weight, then its arguments."""
        kind = data.draw(st.sampled_from(STEP_WEIGHTS), label="kind")
        getattr(self, kind)(**data.draw(st.fixed_dictionaries(self.ARGUMENTS[kind]), label=kind))

    # -------------------------------------------------------------- invariants (after every block)

    @invariant()
    def invariants_hold(self) -> None:
        chain = self.chain
        orders = all_orders(chain)
        assert set(orders) == set(self.order_ids)
        check_conservation(chain)
        check_listings(chain, orders)
        check_deadlines(chain, orders)
        check_reputation(chain, orders)
        check_digital_goods(chain, orders)
        check_stock(chain, orders, self.initial_stock, self.stock_deltas)

    def teardown(self) -> None:
        """One block after every window ends every order, digital ones included (R15, R16)."""
        if not hasattr(self, "chain"):
            return
        self.chain.advance(LAST_WINDOW_MS)
        orders = all_orders(self.chain)
        assert all(order.state in TERMINAL_STATES for order in orders.values())
        assert self.chain.schedule() == []
        self.invariants_hold()


class _Overlay:
    """Committed values with a block's changes on top (to read the state a failed tx saw)."""

    def __init__(self, values: dict[bytes, bytes], changes: dict[bytes, bytes | None]) -> None:
        self.values = values
        self.changes = changes

    def get(self, key: bytes) -> bytes | None:
        if key in self.changes:
            return self.changes[key]
        return self.values.get(key)

    def scan(self, start: bytes, end: bytes) -> Any:
        raise NotImplementedError("account reads never scan")


def _key_of(address: bytes) -> KeyPair:
    for who in (*EVERYONE, VALIDATOR):
        if who.address == address:
            return who
    raise KeyError(address.hex())


Marketplace.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None, derandomize=True)
TestMarketplace = Marketplace.TestCase
