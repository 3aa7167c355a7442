"""A marketplace load of a few thousand transactions for multi-node tests (PROTOCOL §5, §10).

`MarketLoad` plays a market through a running testnet in phases: the faucet (a registrar)
grants roles and funds fresh accounts; merchants open shops, list goods and register
items; buyers pay one another (new accounts appear) and place orders; merchants accept,
reject and ship; carriers deliver; buyers cancel, confirm and review; merchants reply.
Orders end in several states (placed, accepted, rejected, cancelled, delivered, completed).

Every phase signs its transactions locally with consecutive nonces, sends them with
`POST /txs/batch` (canonical msgpack, at most `BATCH` per request, 429 honoured), and
waits until every sender's nonce on the chosen node reached what it signed: a phase never
holds more than `mempool.max_pending_per_sender` (65) transactions of one sender, and a
transaction that depends on another sender's waits for the next phase.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair
from tests.e2e.harness.http_client import POLITE_PATIENCE_S, http_post
from tests.e2e.harness.testnet_node import NodeHandle
from tests.e2e.harness.waiting import wait_until

BATCH = 200
"""Most transactions in one `POST /txs/batch`."""

PER_SENDER = 60
"""Most transactions of one sender in one phase (below `max_pending_per_sender` = 65)."""

SHIPPING = b"\x00" * 80
"""A sealed shipping address (its contents are the merchant's to open, R13)."""

PRICE = 1_000
"""µMKT of every listing."""

FUNDS = 50_000_000
"""µMKT the faucet gives every market participant."""


def market_key(seed: str, label: str, index: int) -> KeyPair:
    """A deterministic key of one participant of the market named `seed`."""
    return KeyPair.from_seed(hashlib.sha256(f"{seed}/{label}/{index}".encode()).digest())


@dataclass
class Order:
    """One order the load placed, and what it did to it since."""

    id: bytes
    """The order id (its `order_place` transaction hash)."""
    buyer: KeyPair
    """Who placed it."""
    merchant: int
    """Index of the merchant whose listing it bought."""
    state: str = "placed"
    """The state the load's transactions left it in."""
    carrier: KeyPair | None = None
    """The carrier it was shipped with."""


@dataclass
class MarketLoad:
    """A market played through a testnet's HTTP API (see the module docstring)."""

    faucet: KeyPair
    """The funded registrar (`accounts/faucet.json` of a testnet)."""
    chain_id: str
    """The chain id every transaction carries."""
    min_fee: int
    """The fee of every transaction."""
    seed: str = "state-sync"
    """Names the market's keys, so that two loads on one chain do not collide."""
    merchant_count: int = 8
    """Shops (one merchant each)."""
    buyer_count: int = 40
    """Buyers, who also pay one another."""
    rng: random.Random = field(default_factory=lambda: random.Random(15))
    """Chooses recipients and amounts (seeded: runs repeat)."""
    nonces: dict[bytes, int] = field(default_factory=dict)
    """Next nonce of every sender the load signed for."""
    expected: dict[bytes, int] = field(default_factory=dict)
    """Every sender's nonce once its signed transactions are final."""
    shops: list[bytes] = field(default_factory=list)
    """Shop ids, by merchant."""
    listings: list[bytes] = field(default_factory=list)
    """Listing ids (three per shop)."""
    catalog: list[bytes] = field(default_factory=list)
    """Listing ids of the bulk catalog (long descriptions: they make the state big enough
    for a snapshot of several chunks)."""
    items: list[str] = field(default_factory=list)
    """Registered item ids."""
    orders: list[Order] = field(default_factory=list)
    """Every order placed."""
    sent: int = 0
    """Transactions sent."""

    def __post_init__(self) -> None:
        self.merchants = [market_key(self.seed, "merchant", i) for i in range(self.merchant_count)]
        """Shop owners (role `merchant`)."""
        self.buyers = [market_key(self.seed, "buyer", i) for i in range(self.buyer_count)]
        """Buyers."""
        self.carriers = [market_key(self.seed, "carrier", i) for i in range(2)]
        """Carriers (role `carrier`)."""
        self.arbiter = market_key(self.seed, "arbiter", 0)
        """The shops' arbiter (role `arbiter`)."""
        self.payees: list[bytes] = []
        """Fresh addresses that only ever received a transfer."""
        self.nonces.setdefault(self.faucet.address, 0)

    # --- what the load touched ----------------------------------------------------------

    def accounts(self) -> list[bytes]:
        """Every address the load signed for or paid."""
        people = [self.faucet, *self.merchants, *self.buyers, *self.carriers, self.arbiter]
        return [key.address for key in people] + list(self.payees)

    def order_states(self) -> dict[str, int]:
        """How many orders the load left in each state."""
        counts: dict[str, int] = {}
        for order in self.orders:
            counts[order.state] = counts.get(order.state, 0) + 1
        return counts

    # --- signing and sending -------------------------------------------------------------

    def sign(self, sender: KeyPair, tx_type: str, payload: dict[str, Any]) -> Transaction:
        """A signed transaction with the sender's next nonce."""
        nonce = self.nonces.get(sender.address, 0)
        self.nonces[sender.address] = nonce + 1
        self.expected[sender.address] = nonce + 1
        return sign_transaction(sender, self.chain_id, tx_type, payload, nonce, self.min_fee)

    def send(self, txs: Sequence[Transaction], nodes: Sequence[NodeHandle], timeout: float = 120.0) -> None:
        """Send `txs` (spread over `nodes`) and wait until every sender's nonce on `nodes[0]`
        reached what the load signed."""
        for number, batch in enumerate(_batches(txs)):
            _post_batch(nodes[number % len(nodes)], batch)
        self.sent += len(txs)
        self.wait_final(nodes[0], {tx.sender for tx in txs}, timeout)
        self.check_passed(nodes[0], txs)

    @staticmethod
    def check_passed(node: NodeHandle, txs: Sequence[Transaction]) -> None:
        """The first and last transaction of each type in `txs` passed their rules on `node`
        (a sample: a failing phase fails in all its transactions of a type)."""
        by_type: dict[str, list[Transaction]] = {}
        for tx in txs:
            by_type.setdefault(tx.type, []).append(tx)
        for group in by_type.values():
            for tx in {group[0].hash: group[0], group[-1].hash: group[-1]}.values():
                view = node.get_ok(f"/txs/{tx.hash.hex()}")
                assert view["result"]["ok"], f"{tx.type} {tx.hash.hex()} failed on {node.name}: {view['result']}"

    def wait_final(self, node: NodeHandle, senders: set[bytes], timeout: float = 120.0) -> None:
        """Wait until each of `senders` has on `node` the nonce the load expects."""
        waiting = set(senders)

        def all_final() -> bool:
            for sender in sorted(waiting):
                if node.get_ok(f"/accounts/{sender.hex()}")["nonce"] >= self.expected[sender]:
                    waiting.discard(sender)
                else:
                    return False
            return True

        wait_until(all_final, timeout, lambda: f"{len(waiting)} senders' transactions final on {node.name}: "
                                               f"{node.log_tail()}")

    # --- the phases --------------------------------------------------------------------

    def open_market(self, nodes: Sequence[NodeHandle]) -> None:
        """Roles and funds, then shops, listings and items."""
        grants = [(key, "merchant") for key in self.merchants] + [(key, "carrier") for key in self.carriers]
        grants.append((self.arbiter, "arbiter"))
        txs = [self.sign(self.faucet, "role_grant", {"account": key.address, "role": role,
                                                     "evidence_hash": hashlib.sha256(b"kyc").digest()})
               for key, role in grants]
        self.send(txs, nodes)
        people = [*self.merchants, *self.buyers, *self.carriers, self.arbiter]
        txs = [self.sign(self.faucet, "transfer", {"to": key.address, "amount": FUNDS}) for key in people]
        assert len(txs) <= PER_SENDER
        self.send(txs, nodes)
        txs = []
        for number, merchant in enumerate(self.merchants):
            shop = self.sign(merchant, "shop_create", {"name": f"Shop {number}", "points_bps": 100 * number,
                                                       "max_redeem_bps": 1000, "arbiters": [self.arbiter.address]})
            self.shops.append(shop.hash)
            txs.append(shop)
            for kind in ("tea", "cups", "pots"):
                listing = self.sign(merchant, "listing_create", {
                    "shop_id": shop.hash, "title": f"{kind.title()} of shop {number}", "price": PRICE,
                    "stock": 10_000, "tags": [kind, f"shop{number}"], "description": f"fine {kind}"})
                self.listings.append(listing.hash)
                txs.append(listing)
            for serial in range(2):
                item_id = f"ITEM-{self.seed}-{number}-{serial}"
                txs.append(self.sign(merchant, "item_register", {"item_id": item_id,
                                                                 "description": f"unique piece {serial}"}))
                self.items.append(item_id)
        self.send(txs, nodes)

    def stock_catalog(self, nodes: Sequence[NodeHandle], per_merchant: int = 60,
                      description_bytes: int = 1990) -> None:
        """Each merchant lists `per_merchant` goods with a `description_bytes` description
        (tag `catalog`, words no search of the checks uses)."""
        txs = []
        for number, merchant in enumerate(self.merchants):
            for serial in range(min(per_merchant, PER_SENDER)):
                text = f"catalog entry {number}-{serial} " + "lorem ipsum " * 200
                listing = self.sign(merchant, "listing_create", {
                    "shop_id": self.shops[number], "title": f"Catalog {number}-{serial}", "price": PRICE,
                    "stock": 5, "tags": ["catalog"], "description": text[:description_bytes]})
                self.catalog.append(listing.hash)
                txs.append(listing)
        self.send(txs, nodes)

    def payments(self, nodes: Sequence[NodeHandle], per_buyer: int = 25, fresh_every: int = 5) -> None:
        """Each buyer pays `per_buyer` transfers to other buyers; every `fresh_every`-th goes
        to a fresh address (a new account)."""
        txs = []
        for number, buyer in enumerate(self.buyers):
            for count in range(per_buyer):
                if count % fresh_every == 0:
                    recipient = market_key(self.seed, f"payee{len(self.payees)}", number).address
                    self.payees.append(recipient)
                else:
                    recipient = self.rng.choice([other for other in self.buyers if other is not buyer]).address
                txs.append(self.sign(buyer, "transfer", {"to": recipient, "amount": self.rng.randint(1, 5_000)}))
        self.send(txs, nodes)

    def place_orders(self, nodes: Sequence[NodeHandle], per_buyer: int = 4) -> None:
        """Each buyer places `per_buyer` orders, on the shops in turn."""
        txs = []
        for number, buyer in enumerate(self.buyers):
            for count in range(per_buyer):
                merchant = (number + count) % len(self.merchants)
                listing = self.listings[3 * merchant + count % 3]
                tx = self.sign(buyer, "order_place", {"listing_id": listing, "quantity": 1 + count % 2,
                                                      "max_unit_price": PRICE, "shipping": SHIPPING,
                                                      "arbiter": self.arbiter.address})
                self.orders.append(Order(tx.hash, buyer, merchant))
                txs.append(tx)
        self.send(txs, nodes)

    def fulfil(self, nodes: Sequence[NodeHandle]) -> None:
        """Merchants accept (and ship most), reject a few; buyers cancel a few; carriers
        deliver; buyers confirm and review most deliveries; merchants reply to some reviews."""
        placed = [order for order in self.orders if order.state == "placed"]
        txs = []
        by_merchant: dict[int, int] = {}
        for position, order in enumerate(placed):
            merchant = self.merchants[order.merchant]
            turn = position % 8
            if turn == 7:  # stays placed
                continue
            if by_merchant.get(order.merchant, 0) + 2 > PER_SENDER:
                continue
            if turn == 6:
                txs.append(self.sign(order.buyer, "order_cancel", {"order_id": order.id}))
                order.state = "cancelled"
                continue
            if turn == 5:
                txs.append(self.sign(merchant, "order_reject", {"order_id": order.id, "reason": "sold out"}))
                order.state = "rejected"
            else:
                txs.append(self.sign(merchant, "order_accept", {"order_id": order.id}))
                order.state = "accepted"
                if turn < 4:
                    order.carrier = self.carriers[position % len(self.carriers)]
                    txs.append(self.sign(merchant, "order_ship", {"order_id": order.id,
                                                                  "carrier": order.carrier.address,
                                                                  "tracking": f"SF{position:06d}"}))
                    order.state = "shipped"
            by_merchant[order.merchant] = by_merchant.get(order.merchant, 0) + 2
        self.send(txs, nodes)
        shipped = [order for order in self.orders if order.state == "shipped"]
        txs = []
        for order in shipped:
            assert order.carrier is not None
            if sum(1 for tx in txs if tx.sender == order.carrier.address) >= PER_SENDER:
                continue
            txs.append(self.sign(order.carrier, "shipment_update", {"order_id": order.id, "status": "delivered",
                                                                    "location": "front door"}))
            order.state = "delivered"
        self.send(txs, nodes)
        txs, reviewed = [], []
        for position, order in enumerate(o for o in self.orders if o.state == "delivered"):
            if position % 4 == 3:
                continue  # stays delivered
            txs.append(self.sign(order.buyer, "order_confirm", {"order_id": order.id}))
            order.state = "completed"
            if position % 2 == 0:
                txs.append(self.sign(order.buyer, "review_submit", {"order_id": order.id, "rating": 1 + position % 5,
                                                                    "text": f"review {position}"}))
                reviewed.append(order)
        self.send(txs, nodes)
        txs = [self.sign(self.merchants[order.merchant], "review_reply", {"order_id": order.id, "text": "thanks"})
               for order in reviewed[::3]]
        if txs:
            self.send(txs, nodes)

    def play(self, nodes: Sequence[NodeHandle], rounds: int = 1) -> None:
        """The whole market: open it, then `rounds` of payments, orders and fulfilment."""
        self.open_market(nodes)
        self.stock_catalog(nodes)
        for _ in range(rounds):
            self.payments(nodes)
            self.place_orders(nodes)
            self.fulfil(nodes)


def _batches(txs: Sequence[Transaction]) -> list[list[Transaction]]:
    """`txs` in batches of at most `BATCH`, a sender's transactions all in one batch (in
    nonce order), so that no node sees a sender's later nonce before its earlier ones."""
    by_sender: dict[bytes, list[Transaction]] = {}
    for tx in txs:
        by_sender.setdefault(tx.sender, []).append(tx)
    batches: list[list[Transaction]] = [[]]
    for group in by_sender.values():
        if batches[-1] and len(batches[-1]) + len(group) > BATCH:
            batches.append([])
        batches[-1].extend(group)
    return [batch for batch in batches if batch]


def _post_batch(node: NodeHandle, txs: Sequence[Transaction]) -> None:
    """POST one batch; every transaction must be admitted (or be already known)."""
    body = codec.encode([tx.raw for tx in txs])

    def admitted() -> dict[str, Any] | None:
        status, answer = http_post(node.url + "/txs/batch", body, timeout=60.0, patience_s=POLITE_PATIENCE_S)
        return answer if status == 200 else None

    answer = wait_until(admitted, 120.0, lambda: f"{node.name} admitting a batch: {node.log_tail()}")
    refused = [result["error"] for result in answer["results"]
               if "error" in result and result["error"]["code"] not in ("duplicate",)]
    assert not refused, f"{node.name} refused {len(refused)} of {len(txs)} transactions: {refused[:3]}"
