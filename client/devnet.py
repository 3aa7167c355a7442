"""`marketchain devnet`: a local testnet seeded with demo data through real transactions.

The demo is a small marketplace in every state the chain can show at once: the faucet
(a registrar) grants roles with KYC evidence hashes; two merchants open shops (one
names an arbiter, one has unconditional returns) and list goods; a producer registers
unique tea cakes, an inspector and a carrier add provenance events and the merchant
lists them; two buyers place orders that end up placed, accepted, shipped, delivered,
return_requested, disputed, completed, cancelled, rejected, refunded and resolved. With
the devnet's `accept_window_ms` of one minute the placed order then expires by the
chain's own deadline (R15). The bike shop also sells gift cards (a digital listing, R41):
a buyer's order of one is left placed for the devnet's merchant agent
(client/devnet_merchant.py), which delivers a code sealed to the buyer (issue 16).

Seeding is fast: transactions are signed here with locally tracked nonces and sent in
batches (`POST /txs/batch`); the seeder waits only between stages, where a transaction
needs an earlier one from another account (its role, its object, its state). Ids of
created objects are transaction hashes (R9), known before submission, so one account's
dependent transactions (a shop, then its listings) go in the same stage in nonce order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client import payloads
from client.keystore import load_key_file, write_plain_key
from client.node_client import NodeClient
from client.sealing import open_sealed, seal_for
from marketplace_tx.chain.transaction import sign_transaction
from marketplace_tx.primitives.crypto import KeyPair

DEMO_ACCEPT_WINDOW_MS = 60_000
"""The devnet's `accept_window_ms`: a placed order nobody accepts expires after a minute."""

EXTRA_ACCOUNTS = ("frank", "grace", "heidi")
"""Demo accounts beside the testnet's dev accounts: a producer, an inspector, a second buyer."""

EXTRA_FUNDING = 10_000 * 1_000_000
"""µMKT the faucet sends to each extra account."""

DEMO_ROLES = (
    ("alice", "merchant"),
    ("bob", "merchant"),
    ("carol", "arbiter"),
    ("dave", "carrier"),
    ("frank", "producer"),
    ("grace", "inspector"),
)
"""Roles the faucet (a registrar) grants in the demo, each with a KYC evidence hash."""

ADDRESSES = {
    "erin": "Erin Example, 12 Harbour Road, Qingdao 266000",
    "heidi": "Heidi Muster, Lindenstraße 5, 10969 Berlin",
}
"""The buyers' delivery addresses; only sealed boxes of them go on chain (R13)."""

TEA_ITEMS = ("PUER-2019-0001", "PUER-2019-0002")
"""Unique items the producer registers and the tea shop lists."""

GIFT_CARD_TITLE = "Gift card 25 MKT"
"""The digital listing (R41) of the bike shop, whose orders the devnet's merchant agent delivers."""

GIFT_CARD_PRICE = 25_000_000
"""Its price, µMKT."""

GIFT_CARD_STOCK = 100
"""Its stock: one demo code per unit in the agent's inventory (client/devnet_merchant.py)."""

DIGITAL_BUYER = "heidi"
"""Who places the demo's digital order (erin is left for the reader's own, from the CLI)."""

MKT = 1_000_000


class DemoError(Exception):
    """A demo transaction that was refused or failed: the demo no longer matches the chain."""


@dataclass
class DemoData:
    """What the demo created, for the summary the devnet prints."""

    accounts: dict[str, str] = field(default_factory=dict)
    """name → address (hex)."""
    shops: dict[str, str] = field(default_factory=dict)
    """shop name → shop id."""
    listings: dict[str, str] = field(default_factory=dict)
    """listing title → listing id."""
    orders: dict[str, str] = field(default_factory=dict)
    """the state the demo leaves it in → order id."""
    items: tuple[str, ...] = TEA_ITEMS
    """Unique item ids with provenance."""
    expiring_order: str = ""
    """The placed order that expires by deadline a minute after it was placed."""
    digital_listing: str = ""
    """The gift-card listing (digital, R41) of the bike shop."""
    digital_order: str = ""
    """The demo's digital order, placed for the merchant agent to deliver (issue 16)."""
    transactions: int = 0
    """How many transactions the demo sent."""


class _Seeder:
    """Signs with local nonces, queues a stage's transactions, sends them in one batch, waits."""

    def __init__(self, client: NodeClient, keys: dict[str, KeyPair], say: Callable[[str], None]) -> None:
        status = client.status()
        self.client = client
        self.keys = keys
        self.say = say
        self.chain_id: str = status["chain_id"]
        self.fee: int = status["min_fee"]
        self.nonces = {name: client.account(key.address)["pending_nonce"] for name, key in keys.items()}
        self.queued: list[tuple[bytes, str, str]] = []
        self.sent = 0

    def send(self, signer: str, tx_type: str, payload: dict[str, Any]) -> str:
        """Queue a signed transaction; return its hash (the id of what it creates)."""
        tx = sign_transaction(self.keys[signer], self.chain_id, tx_type, payload, self.nonces[signer], self.fee)
        self.nonces[signer] += 1
        self.queued.append((tx.raw, tx.hash.hex(), f"{signer} {tx_type}"))
        return tx.hash.hex()

    def stage(self, title: str) -> None:
        """Send the queued transactions in one batch and wait until each is final and succeeded."""
        queued, self.queued = self.queued, []
        results = self.client.submit_batch([raw for raw, _, _ in queued])
        for (_, _, label), result in zip(queued, results, strict=True):
            if "error" in result:
                raise DemoError(f"{label} refused: {result['error']['code']}: {result['error']['message']}")
        heights = []
        for _, tx_hash, label in queued:
            view = self.client.wait_for_tx(tx_hash)
            if not view["result"]["ok"]:
                raise DemoError(f"{label} failed: {view['result']['code']}: {view['result'].get('message', '')}")
            heights.append(view["height"])
        self.sent += len(queued)
        blocks = f"block {heights[0]}" if min(heights) == max(heights) else f"blocks {min(heights)}-{max(heights)}"
        self.say(f"  {title:<48} {len(queued):>2} txs  {blocks}")


def _evidence(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def load_demo_keys(accounts_directory: Path) -> dict[str, KeyPair]:
    """The dev accounts of the testnet plus the demo's extra ones (created on first use)."""
    for name in EXTRA_ACCOUNTS:
        path = accounts_directory / f"{name}.json"
        if not path.exists():
            write_plain_key(path, KeyPair.generate(), overwrite=False)
    return {path.stem: load_key_file(path, None) for path in sorted(accounts_directory.glob("*.json"))}


class _Demo:
    """The demo marketplace, built stage by stage; each method queues one stage and sends it."""

    def __init__(self, seeder: _Seeder) -> None:
        self.seeder = seeder
        self.address = {name: key.address for name, key in seeder.keys.items()}
        self.data = DemoData(accounts={name: key.address.hex() for name, key in seeder.keys.items()})
        self.orders: dict[str, str] = {}
        self.sealed_shipping: dict[str, bytes] = {}

    def send(self, signer: str, tx_type: str, payload: dict[str, Any]) -> str:
        return self.seeder.send(signer, tx_type, payload)

    def place(self, buyer: str, listing: str, price: int, quantity: int, merchant: str, arbiter: bool) -> str:
        """`order_place` with the buyer's address sealed to the merchant (R13)."""
        shipping = seal_for(self.address[merchant], ADDRESSES[buyer].encode())
        order_id = self.send(buyer, "order_place", payloads.order_place(
            bytes.fromhex(listing), quantity, price, shipping, self.address["carol"] if arbiter else None))
        self.sealed_shipping[order_id] = shipping
        return order_id

    def ship(self, merchant: str, order_id: str, tracking: str) -> None:
        """As `tx order-ship` does: the merchant opens the buyer's box and re-seals it to the carrier."""
        plaintext = open_sealed(self.seeder.keys[merchant], self.sealed_shipping[order_id])
        self.send(merchant, "order_ship", payloads.order_ship(
            bytes.fromhex(order_id), self.address["dave"], tracking, seal_for(self.address["dave"], plaintext)))

    def order_tx(self, signer: str, tx_type: str, state: str, **fields: Any) -> None:
        """A transaction on the order that the demo leaves in `state`."""
        self.send(signer, tx_type, {"order_id": bytes.fromhex(self.orders[state]), **fields})

    def roles_and_funds(self) -> None:
        for name, role in DEMO_ROLES:
            self.send("faucet", "role_grant", {"account": self.address[name], "role": role,
                                               "evidence_hash": _evidence(f"KYC dossier of {name} for {role}")})
        for name in EXTRA_ACCOUNTS:
            self.send("faucet", "transfer", {"to": self.address[name], "amount": EXTRA_FUNDING,
                                             "memo": "devnet float"})
        self.seeder.stage("roles (KYC evidence hashes) and funds")

    def shops_listings_items(self) -> None:
        """Shops and their listings (ids known before they exist); items registered, custody to the carrier."""
        tea = self.send("alice", "shop_create", payloads.shop_create(
            "Alice's Tea House", 500, 2000, "Single-estate teas from Yunnan and Zhejiang.", [self.address["carol"]]))
        bikes = self.send("bob", "shop_create", payloads.shop_create(
            "Bob's Bikes", 100, 1000, "Parts and lights. Returns accepted, no questions asked (无条件退换货)."))
        self.data.shops = {"Alice's Tea House": tea, "Bob's Bikes": bikes}
        goods = (
            ("alice", tea, "Longjing green tea, 250 g", 12_500_000, 100, ["tea", "green"]),
            ("alice", tea, "Pu'er tuocha, 100 g", 8 * MKT, 40, ["tea", "puer"]),
            ("bob", bikes, "LED bike lamp", 4_200_000, 30, ["bike", "light"]),
            ("bob", bikes, "Brass bell", 1_500_000, 200, ["bike"]),
        )
        for owner, shop, title, price, stock, tags in goods:
            self.data.listings[title] = self.send(owner, "listing_create", payloads.listing_create(
                bytes.fromhex(shop), title, price, stock, tags=tags, metadata_hash=_evidence(f"{title} photos")))
        self.data.digital_listing = self.data.listings[GIFT_CARD_TITLE] = self.send(
            "bob", "listing_create", payloads.listing_create(
                bytes.fromhex(bikes), GIFT_CARD_TITLE, GIFT_CARD_PRICE, GIFT_CARD_STOCK,
                "A code for 25 MKT of parts and lights, delivered on chain sealed to you (R41).",
                tags=["gift", "digital"], digital=True))
        for item_id in TEA_ITEMS:
            self.send("frank", "item_register", payloads.item_register(
                item_id, "Pu'er cake 357 g, 2019 spring, Bulang mountain", _evidence(f"{item_id} certificate")))
            self.send("frank", "item_event", payloads.item_event(
                item_id, "harvested", "Bulang mountain, Yunnan", note="old-tree leaves, hand picked"))
            self.send("frank", "item_transfer", payloads.item_transfer(item_id, self.address["dave"], True))
        self.seeder.stage("2 shops, 5 listings (1 digital), 2 unique items")

    def provenance_and_orders(self) -> None:
        """An inspector and the carrier add events, custody goes to the merchant; buyers order."""
        for item_id in TEA_ITEMS:
            self.send("grace", "item_event", payloads.item_event(
                item_id, "inspected", "Kunming lab", _evidence(f"{item_id} lab report"), "no pesticide found"))
            self.send("dave", "item_event", payloads.item_event(item_id, "warehoused", "Kunming hub"))
            self.send("dave", "item_transfer", payloads.item_transfer(item_id, self.address["alice"], True))
        listing = self.data.listings
        tea, puer = listing["Longjing green tea, 250 g"], listing["Pu'er tuocha, 100 g"]
        lamp, bell = listing["LED bike lamp"], listing["Brass bell"]
        plan = (
            ("placed", "erin", tea, 12_500_000, 1), ("accepted", "heidi", tea, 12_500_000, 2),
            ("shipped", "erin", puer, 8 * MKT, 3), ("delivered", "heidi", lamp, 4_200_000, 1),
            ("return_requested", "erin", lamp, 4_200_000, 2), ("disputed", "heidi", tea, 12_500_000, 1),
            ("completed", "erin", tea, 12_500_000, 4), ("cancelled", "heidi", bell, 1_500_000, 1),
            ("rejected", "erin", bell, 1_500_000, 3), ("refunded", "heidi", puer, 8 * MKT, 1),
            ("resolved", "erin", puer, 8 * MKT, 2),
        )
        for state, buyer, listing_id, price, quantity in plan:
            merchant = "alice" if listing_id in (tea, puer) else "bob"
            self.orders[state] = self.place(buyer, listing_id, price, quantity, merchant, merchant == "alice")
        # Left placed: the devnet's merchant agent delivers it (R41).
        self.orders["digital"] = self.data.digital_order = self.place(
            DIGITAL_BUYER, self.data.digital_listing, GIFT_CARD_PRICE, 1, "bob", False)
        self.seeder.stage("inspection, custody, 12 orders (1 digital)")

    def fulfilment(self) -> None:
        """Merchants accept, ship (re-sealing for the carrier), reject, refund; a buyer cancels."""
        for item_id in TEA_ITEMS:
            self.send("frank", "item_transfer", payloads.item_transfer(item_id, self.address["alice"], False))
        self.order_tx("alice", "order_accept", "accepted")
        self.order_tx("alice", "order_accept", "refunded")
        self.order_tx("alice", "order_refund", "refunded", amount=8 * MKT)
        for state, tracking in (("shipped", "SF1001"), ("disputed", "SF1002"), ("completed", "SF1003"),
                                ("resolved", "SF1004")):
            self.ship("alice", self.orders[state], tracking)
        for state, tracking in (("delivered", "DHL2001"), ("return_requested", "DHL2002")):
            self.ship("bob", self.orders[state], tracking)
        self.order_tx("bob", "order_reject", "rejected", reason="that colour is sold out")
        self.order_tx("heidi", "order_cancel", "cancelled")
        self.seeder.stage("accept, ship, reject, refund, cancel")

    def item_listing_and_tracking(self) -> None:
        """The merchant lists the unique items; the carrier reports progress."""
        title = "Aged Pu'er cake 2019, single estate"
        self.data.listings[title] = self.send("alice", "listing_create", payloads.listing_create(
            bytes.fromhex(self.data.shops["Alice's Tea House"]), title, 88 * MKT, None,
            "Each cake has its own provenance on chain.", TEA_ITEMS, ["tea", "puer", "collectible"]))
        for state in ("shipped", "delivered", "return_requested", "disputed", "completed", "resolved"):
            self.order_tx("dave", "shipment_update", state, status="picked_up", location="Kunming hub")
        self.order_tx("dave", "shipment_update", "shipped", status="in_transit", location="Shanghai sorting centre",
                      note="on schedule")
        for state in ("delivered", "return_requested", "completed"):
            self.order_tx("dave", "shipment_update", state, status="delivered", location="front door",
                          note="signed by the buyer")
        self.seeder.stage("item listing, shipment updates")

    def buyers_act(self) -> None:
        """Buyers confirm and review, request a return, open disputes, order a unique item."""
        cakes = self.data.listings["Aged Pu'er cake 2019, single estate"]
        self.orders["completed (unique item)"] = self.place("heidi", cakes, 88 * MKT, 1, "alice", True)
        self.order_tx("erin", "order_confirm", "completed")
        self.order_tx("erin", "review_submit", "completed", rating=5, text="Fragrant, fresh, and fast delivery.")
        self.order_tx("erin", "return_request", "return_requested", reason="one lamp flickers")
        self.order_tx("heidi", "dispute_open", "disputed", reason="the tin arrived crushed")
        self.order_tx("erin", "dispute_open", "resolved", reason="one tuocha is missing")
        self.seeder.stage("confirm + review, return, disputes, item order")

    def settlement(self) -> None:
        """Merchant reply, partial refund offer, arbiter ruling, shipping the unique item."""
        self.order_tx("alice", "review_reply", "completed", text="Thank you! The autumn harvest arrives in October.")
        self.ship("alice", self.orders["completed (unique item)"], "SF1005")
        self.order_tx("bob", "order_refund", "return_requested", amount=4_200_000)  # half: an offer (R14)
        # 40 % back to the buyer stays within escrow − arbiter fee for any fee up to 60 %.
        self.order_tx("carol", "dispute_resolve", "resolved", buyer_amount=2 * 8 * MKT * 4 // 10,
                      ruling="partly refunded: one of two tuocha missing")
        self.seeder.stage("reply, partial refund offer, ruling, ship item")

    def sale_of_item(self) -> None:
        """The unique item's buyer confirms: ownership passes with a `sold` entry (R22)."""
        self.order_tx("heidi", "order_confirm", "completed (unique item)")
        self.order_tx("heidi", "review_submit", "completed (unique item)", rating=4, text="Lovely cake, slow post.")
        self.seeder.stage("unique item sold")


def seed_demo_data(url: str, accounts_directory: Path, say: Callable[[str], None]) -> DemoData:
    """Send the demo transactions to the node at `url`, stage by stage; return what was made."""
    seeder = _Seeder(NodeClient(url), load_demo_keys(accounts_directory), say)
    demo = _Demo(seeder)
    demo.roles_and_funds()
    demo.shops_listings_items()
    demo.provenance_and_orders()
    demo.fulfilment()
    demo.item_listing_and_tracking()
    demo.buyers_act()
    demo.settlement()
    demo.sale_of_item()
    demo.data.orders = demo.orders
    demo.data.expiring_order = demo.orders["placed"]
    demo.data.transactions = seeder.sent
    return demo.data


def describe(demo: DemoData, url: str) -> str:
    """A short summary of the demo for the devnet's output."""
    lines = ["demo data:"]
    lines += [f"  shop     {shop_id}  {name}" for name, shop_id in demo.shops.items()]
    lines += [f"  listing  {listing_id}  {title}" for title, listing_id in demo.listings.items()]
    lines += [f"  order    {order_id}  {state}" for state, order_id in demo.orders.items()]
    lines += [f"  item     {item_id}" for item_id in demo.items]
    lines.append(f"  the placed order {demo.expiring_order[:16]}… expires by deadline about "
                 f"{DEMO_ACCEPT_WINDOW_MS // 1000} s after it was placed (accept_window_ms = {DEMO_ACCEPT_WINDOW_MS})")
    if demo.digital_order:
        lines.append(f"  the digital order {demo.digital_order[:16]}… ({GIFT_CARD_TITLE}) is delivered by the merchant "
                     "agent within a block or two, a code sealed to the buyer (R41)")
    lines.append(f"  {demo.transactions} transactions; see them at {url}/")
    return "\n".join(lines)

