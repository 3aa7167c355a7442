"""A whole market played through a real node, for the marketplace read-model tests
(PROTOCOL §5, §6, §10, R12–R22): a registrar grants roles, a merchant opens a shop with an
arbiter, registers items and lists goods, buyers order, the merchant accepts and ships, the
carrier delivers, buyers confirm and review, the merchant replies; it also sends
transactions that fail a rule.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from marketplace_tx.chain.transaction import Transaction
from marketplace_tx.primitives.crypto import KeyPair
from tests.e2e.node_process import NodeProcess
from tests.integration.signing_client import SigningClient, sealed_address

FUNDED = 10_000_000
"""µMKT of every genesis-funded person of the market."""


def key(name: str) -> KeyPair:
    """A deterministic key of one person of the market."""
    return KeyPair.from_seed(hashlib.sha256(b"test_marketplace_http/" + name.encode()).digest())


MERCHANT, BUYER, BUYER2, CARRIER, ARBITER = (
    key(n) for n in ("merchant", "buyer", "buyer2", "carrier", "arbiter")
)
PEOPLE = (MERCHANT, BUYER, BUYER2, CARRIER, ARBITER)
EVIDENCE = hashlib.sha256(b"kyc documents").digest()
TEA_PRICE, POT_PRICE, CUP_PRICE = 2_000, 150_000, 500
POINTS_BPS = 500


@dataclass
class Market:
    """What the fixture did, for the tests to check."""

    node: NodeProcess
    shop: str = ""
    tea: str = ""
    pot: str = ""
    cup: str = ""
    old_stock: str = ""
    tea_order: str = ""
    pot_order: str = ""
    rejected_order: str = ""
    open_order: str = ""
    txs: dict[str, Transaction] = field(default_factory=dict)
    """Every transaction sent, by a short name."""
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Committed views of the transactions that fail a rule, by expected code."""

    def send(
        self, client: SigningClient, *named: tuple[str, KeyPair, str, dict[str, Any]]
    ) -> list[dict[str, Any]]:
        txs = [client.tx(sender, tx_type, **payload) for _, sender, tx_type, payload in named]
        for (name, *_), tx in zip(named, txs, strict=True):
            self.txs[name] = tx
        return client.ok(*txs)

    def hash(self, name: str) -> str:
        return self.txs[name].hash.hex()


def play_market(node: NodeProcess) -> Market:
    """Play the whole market through `node`; what was sent, for the tests to check."""
    client = SigningClient(node)
    market = Market(node)
    validator = node.validator_key
    market.send(
        client,
        *[
            (
                f"grant_{role}",
                validator,
                "role_grant",
                {"account": account.address, "role": role, "evidence_hash": EVIDENCE},
            )
            for account, role in (
                (MERCHANT, "merchant"),
                (CARRIER, "carrier"),
                (ARBITER, "arbiter"),
            )
        ],
    )
    shop = client.tx(
        MERCHANT,
        "shop_create",
        name="Lotus Tea House",
        description="Teas of Yunnan",
        points_bps=POINTS_BPS,
        max_redeem_bps=2000,
        arbiters=[ARBITER.address],
    )
    market.txs["shop"] = shop
    shop_id = shop.hash
    goods = [
        (
            "item_1",
            MERCHANT,
            "item_register",
            {"item_id": "TEA-POT:001", "description": "Yixing clay teapot"},
        ),
        (
            "item_2",
            MERCHANT,
            "item_register",
            {"item_id": "TEA-POT:002", "description": "Yixing clay teapot"},
        ),
        (
            "tea",
            MERCHANT,
            "listing_create",
            {
                "shop_id": shop_id,
                "title": "Green Tea",
                "price": TEA_PRICE,
                "stock": 50,
                "description": "Spring harvest from Yunnan",
                "tags": ["Tea", "organic"],
            },
        ),
        (
            "pot",
            MERCHANT,
            "listing_create",
            {
                "shop_id": shop_id,
                "title": "Yixing Teapot",
                "price": POT_PRICE,
                "stock": 2,
                "item_ids": ["TEA-POT:001", "TEA-POT:002"],
                "tags": ["teaware"],
            },
        ),
        (
            "cup",
            MERCHANT,
            "listing_create",
            {
                "shop_id": shop_id,
                "title": "Tea Cup",
                "price": CUP_PRICE,
                "stock": 100,
                "tags": ["teaware"],
            },
        ),
        (
            "old_stock",
            MERCHANT,
            "listing_create",
            {"shop_id": shop_id, "title": "Old Stock", "price": 100, "stock": 1},
        ),
    ]
    client.ok(shop)
    market.send(client, *goods)
    market.shop, market.tea, market.pot, market.cup, market.old_stock = (
        market.hash(name) for name in ("shop", "tea", "pot", "cup", "old_stock")
    )
    market.send(
        client,
        (
            "deactivate",
            MERCHANT,
            "listing_update",
            {"listing_id": market.txs["old_stock"].hash, "active": False},
        ),
    )

    def place(
        name: str, buyer: KeyPair, listing: str, quantity: int, price: int, **extra: Any
    ) -> tuple:
        payload = {
            "listing_id": bytes.fromhex(listing),
            "quantity": quantity,
            "max_unit_price": price,
            "shipping": sealed_address(MERCHANT),
            "arbiter": ARBITER.address,
            **extra,
        }
        return (name, buyer, "order_place", payload)

    market.send(
        client,
        place("tea_order", BUYER, market.tea, 3, TEA_PRICE),
        place("pot_order", BUYER, market.pot, 1, POT_PRICE),
    )
    market.tea_order, market.pot_order = market.hash("tea_order"), market.hash("pot_order")
    orders = [market.txs["tea_order"].hash, market.txs["pot_order"].hash]
    market.send(
        client,
        *[
            (f"{verb}_{index}", MERCHANT, f"order_{verb}", {"order_id": order_id, **extra})
            for index, order_id in enumerate(orders)
            for verb, extra in (
                ("accept", {}),
                ("ship", {"carrier": CARRIER.address, "tracking": f"SF{index}"}),
            )
        ],
    )
    market.send(
        client,
        *[
            (
                f"{status}_{index}",
                CARRIER,
                "shipment_update",
                {"order_id": order_id, "status": status, "location": f"hub {status}"},
            )
            for index, order_id in enumerate(orders)
            for status in ("picked_up", "in_transit", "delivered")
        ],
    )
    market.send(
        client,
        *[
            (f"confirm_{index}", BUYER, "order_confirm", {"order_id": order_id})
            for index, order_id in enumerate(orders)
        ],
        ("review_0", BUYER, "review_submit", {"order_id": orders[0], "rating": 4, "text": "fresh"}),
        ("review_1", BUYER, "review_submit", {"order_id": orders[1], "rating": 5}),
    )
    market.send(
        client, ("reply_0", MERCHANT, "review_reply", {"order_id": orders[0], "text": "thank you"})
    )
    # points: redeem some on a third order, which the merchant rejects (points come back, R21)
    market.send(client, place("rejected_order", BUYER, market.tea, 1, TEA_PRICE, redeem_points=400))
    market.rejected_order = market.hash("rejected_order")
    market.send(
        client,
        (
            "reject",
            MERCHANT,
            "order_reject",
            {"order_id": market.txs["rejected_order"].hash, "reason": "out of season"},
        ),
    )
    market.send(client, place("open_order", BUYER2, market.cup, 2, CUP_PRICE))
    market.open_order = market.hash("open_order")
    # rule failures (R12): each is committed, pays its fee, and changes nothing else
    failing = {
        "price_changed": place("bad_price", BUYER2, market.tea, 1, TEA_PRICE - 1),
        "out_of_stock": place("bad_quantity", BUYER2, market.cup, 1_000, CUP_PRICE),
        "forbidden": ("bad_sender", BUYER2, "order_confirm", {"order_id": orders[0]}),
        "invalid_state": (
            "bad_state",
            BUYER2,
            "order_confirm",
            {"order_id": market.txs["open_order"].hash},
        ),
    }
    for code, (name, sender, tx_type, payload) in failing.items():
        tx = client.tx(sender, tx_type, **payload)
        market.txs[name] = tx
        [market.failures[code]] = client.commit(tx)
    return market


def get(market: Market, path: str) -> Any:
    """The 200 JSON answer of `GET path`."""
    return market.node.get_ok(path)


def paged(market: Market, path: str, plural: str, limit: int) -> list[dict[str, Any]]:
    """Every item of a list endpoint, following `next` with pages of `limit`."""
    items: list[dict[str, Any]] = []
    cursor = None
    separator = "&" if "?" in path else "?"
    for _ in range(100):
        url = f"{path}{separator}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        page = get(market, url)
        assert set(page) == {plural, "next"}, page
        assert len(page[plural]) <= limit
        items.extend(page[plural])
        cursor = page["next"]
        if cursor is None:
            return items
    raise AssertionError("paging never ended")
