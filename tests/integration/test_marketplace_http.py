"""The marketplace read model over HTTP on a real node process (PROTOCOL §5, §6, §10, R12–R22, R29).

One node serves the module. The `market` fixture plays a whole market through it:
a registrar grants roles, a merchant opens a shop with an arbiter, registers items
and lists goods, buyers order, the merchant accepts and ships, the carrier delivers,
buyers confirm and review, the merchant replies; it also sends transactions that
fail a rule. The tests then read every endpoint. A second node with a short accept
window shows a deadline firing with no transaction waiting (R15, R29).
"""

from __future__ import annotations

import hashlib
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import nacl.public
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives.crypto import KeyPair, x25519_public_key
from marketplace_tx.rules.reputation import Reputation, trust_score
from tests.e2e.node_process import NodeProcess, http_request, is_error_body, wait_until

pytestmark = pytest.mark.integration

FEE = 10
FUNDED = 10_000_000


def key(name: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(b"test_marketplace_http/" + name.encode()).digest())


MERCHANT, BUYER, BUYER2, CARRIER, ARBITER = (
    key(n) for n in ("merchant", "buyer", "buyer2", "carrier", "arbiter")
)
PEOPLE = (MERCHANT, BUYER, BUYER2, CARRIER, ARBITER)
EVIDENCE = hashlib.sha256(b"kyc documents").digest()
TEA_PRICE, POT_PRICE, CUP_PRICE = 2_000, 150_000, 500
POINTS_BPS = 500


def sealed_address(merchant: KeyPair, address: bytes = b"address") -> bytes:
    """The buyer's address sealed to the merchant's X25519 key (R13)."""
    return nacl.public.SealedBox(
        nacl.public.PublicKey(x25519_public_key(merchant.address))
    ).encrypt(address)


class Client:
    """Signs with each sender's next nonce, submits, and waits until final."""

    def __init__(self, node: NodeProcess) -> None:
        self.node = node
        self.chain_id = node.status()["chain_id"]
        self.nonces: dict[bytes, int] = {}

    def tx(self, sender: KeyPair, tx_type: str, **payload: Any) -> Transaction:
        nonce = self.nonces.get(sender.address, 0)
        self.nonces[sender.address] = nonce + 1
        return sign_transaction(sender, self.chain_id, tx_type, payload, nonce, FEE)

    def commit(self, *txs: Transaction) -> list[dict[str, Any]]:
        for tx in txs:
            assert self.node.submit(tx.raw) == tx.hash.hex()
        return [self.node.wait_for_tx(tx.hash.hex()) for tx in txs]

    def ok(self, *txs: Transaction) -> list[dict[str, Any]]:
        views = self.commit(*txs)
        for view in views:
            assert view["result"]["ok"], view
        return views


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
        self, client: Client, *named: tuple[str, KeyPair, str, dict[str, Any]]
    ) -> list[dict[str, Any]]:
        txs = [client.tx(sender, tx_type, **payload) for _, sender, tx_type, payload in named]
        for (name, *_), tx in zip(named, txs, strict=True):
            self.txs[name] = tx
        return client.ok(*txs)

    def hash(self, name: str) -> str:
        return self.txs[name].hash.hex()


def play_market(node: NodeProcess) -> Market:
    client = Client(node)
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


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory):
    fund = {person.address: FUNDED for person in PEOPLE}
    with NodeProcess(tmp_path_factory.mktemp("market") / "node", fund=fund) as node:
        yield play_market(node)


def get(market: Market, path: str) -> Any:
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


# --- orders ---------------------------------------------------------------------------------


def test_order_history_escrow_and_shipping(market: Market) -> None:
    order = get(market, f"/orders/{market.tea_order}")
    assert order["id"] == market.tea_order
    assert (order["state"], order["escrow"], order["merchant_paid"]) == (
        "completed",
        0,
        3 * TEA_PRICE,
    )
    assert order["buyer"] == BUYER.address.hex() and order["merchant"] == MERCHANT.address.hex()
    assert order["shop_id"] == market.shop and order["carrier"] == CARRIER.address.hex()
    assert order["deadline"] is None and order["ended_at"] == order["history"][-1]["time"]
    for stamp in ("placed_at", "accepted_at", "shipped_at", "delivered_at"):
        assert isinstance(order[stamp], int), stamp
    assert order["review_deadline"] == order["ended_at"] + 2592000000
    secret = nacl.public.PrivateKey(MERCHANT.x25519_secret_key())
    assert nacl.public.SealedBox(secret).decrypt(bytes.fromhex(order["shipping"])) == b"address"
    history = order["history"]
    assert [(entry["event"], entry["state"]) for entry in history] == [
        ("order_place", "placed"),
        ("order_accept", "accepted"),
        ("order_ship", "shipped"),
        ("shipment_update", "shipped"),
        ("shipment_update", "shipped"),
        ("shipment_update", "delivered"),
        ("order_confirm", "completed"),
    ]
    names = [
        "tea_order",
        "accept_0",
        "ship_0",
        "picked_up_0",
        "in_transit_0",
        "delivered_0",
        "confirm_0",
    ]
    assert [entry["tx"] for entry in history] == [market.hash(name) for name in names]
    assert [entry.get("status") for entry in history[3:6]] == [
        "picked_up",
        "in_transit",
        "delivered",
    ]
    assert history[2]["tracking"] == "SF0" and history[2]["carrier"] == CARRIER.address.hex()
    for entry in history:
        assert entry["height"] == market.node.get_ok(f"/txs/{entry['tx']}")["height"]
    assert order["review"]["rating"] == 4 and order["review"]["reply"]["text"] == "thank you"


def test_money_is_conserved(market: Market) -> None:
    """R17: balances plus open escrows equal the genesis supply."""
    genesis = market.node.genesis()
    supply = sum(account["balance"] for account in genesis["accounts"])
    addresses = {account["address"] for account in genesis["accounts"]} | set(genesis["validators"])
    balances = sum(market.node.account(address)["balance"] for address in addresses)
    orders = paged(market, "/orders", "orders", 100)
    assert len(orders) == 4
    escrow = sum(order["escrow"] for order in orders)
    assert escrow == 2 * CUP_PRICE
    assert balances + escrow == supply


def test_order_lists_filter_and_page(market: Market) -> None:
    def ids(query: str) -> list[str]:
        return [order["id"] for order in paged(market, f"/orders?{query}", "orders", 1)]

    buyer = BUYER.address.hex()
    assert ids(f"buyer={buyer}") == [market.rejected_order, market.pot_order, market.tea_order]
    assert ids(f"buyer={buyer}&state=completed") == [market.pot_order, market.tea_order]
    assert ids("state=placed") == [market.open_order]
    assert ids(f"merchant={MERCHANT.address.hex()}&state=rejected") == [market.rejected_order]
    assert ids(f"shop={market.shop}") == [
        market.open_order,
        market.rejected_order,
        market.pot_order,
        market.tea_order,
    ]
    assert ids(f"buyer={BUYER2.address.hex()}&state=completed") == []
    page = get(market, f"/orders?buyer={buyer}&limit=2")
    assert len(page["orders"]) == 2 and page["next"] is not None
    assert page["orders"][0]["history"][-1]["event"] == "order_reject"


def test_rule_failures_show_their_code(market: Market) -> None:
    for code, view in market.failures.items():
        result = view["result"]
        assert (result["ok"], result["code"]) == (False, code), view
        assert result["message"], view
    cup = get(market, f"/listings/{market.cup}")
    assert cup["stock"] == 98, "a failed order took stock"
    assert get(market, f"/orders/{market.open_order}")["state"] == "placed"


# --- shops, reviews, listings, items ------------------------------------------------------


def test_shop_reputation_and_stats(market: Market) -> None:
    shop = get(market, f"/shops/{market.shop}")
    assert shop["id"] == market.shop and shop["owner"] == MERCHANT.address.hex()
    assert shop["name"] == "Lotus Tea House" and shop["arbiters"] == [ARBITER.address.hex()]
    reputation = shop["reputation"]
    assert (
        reputation["rating_count"],
        reputation["rating_sum"],
        reputation["avg_rating_x100"],
    ) == (2, 9, 450)
    assert reputation["orders_completed"] == 2 and reputation["orders_expired"] == 0
    assert reputation["trust_score"] == trust_score(Reputation(**reputation))
    assert shop["stats"] == {
        "orders_placed": 4,
        "orders_completed": 2,
        "units_sold": 4,
        "revenue": 3 * TEA_PRICE + POT_PRICE,
        "orders_refunded": 0,
        "refund_rate_bps": 0,
        "dispute_rate_bps": 0,
    }
    assert (shop["listing_count"], shop["active_listing_count"]) == (4, 3)
    assert [
        item["id"] for item in get(market, f"/shops?owner={MERCHANT.address.hex()}")["shops"]
    ] == [market.shop]
    assert get(market, f"/shops?owner={BUYER.address.hex()}") == {"shops": [], "next": None}
    assert market.shop in [item["id"] for item in paged(market, "/shops", "shops", 1)]


def test_reviews_with_replies(market: Market) -> None:
    reviews = paged(market, f"/shops/{market.shop}/reviews", "reviews", 1)
    buyer = BUYER.address.hex()
    pot_review, tea_review = reviews
    assert pot_review == {
        "order_id": market.pot_order,
        "buyer": buyer,
        "rating": 5,
        "time": pot_review["time"],
        "height": pot_review["height"],
    }
    assert tea_review["order_id"] == market.tea_order and tea_review["text"] == "fresh"
    assert tea_review["reply"]["text"] == "thank you"
    assert (
        tea_review["reply"]["height"]
        == market.node.get_ok(f"/txs/{market.hash('reply_0')}")["height"]
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("q=yunnan", ["tea"]),
        ("q=TEA", ["cup", "tea"]),
        ("q=green%20tea", ["tea"]),
        ("q=tea&max_price=1000", ["cup"]),
        ("tag=teaware", ["cup", "pot"]),
        ("tag=TeaWare&min_price=1000", ["pot"]),
        ("min_price=1000&max_price=100000", ["tea"]),
        ("active=false", ["old_stock"]),
        ("active=true&q=tea", ["cup", "tea"]),
        ("shop={shop}", ["old_stock", "cup", "pot", "tea"]),
        ("shop={shop}&tag=organic", ["tea"]),
        ("q=nothing", []),
    ],
)
def test_listing_search(market: Market, query: str, expected: list[str]) -> None:
    found = paged(market, f"/listings?{query.format(shop=market.shop)}", "listings", 1)
    assert [item["id"] for item in found] == [getattr(market, name) for name in expected]
    for item in found:
        assert item["shop_name"] == "Lotus Tea House"


def test_listing_view(market: Market) -> None:
    tea = get(market, f"/listings/{market.tea}")
    assert (
        tea["id"] == market.tea
        and tea["shop_id"] == market.shop
        and tea["shop_name"] == "Lotus Tea House"
    )
    assert (tea["price"], tea["stock"], tea["sold"], tea["active"]) == (TEA_PRICE, 47, 3, True)
    assert tea["tags"] == ["Tea", "organic"]
    pot = get(market, f"/listings/{market.pot}")
    assert pot["item_ids"] == ["TEA-POT:002"] and pot["stock"] == 1 and pot["item_listing"] is True


def test_items_carry_their_provenance(market: Market) -> None:
    buyer = BUYER.address.hex()
    sold = get(market, "/items/TEA-POT:001")
    assert sold["id"] == "TEA-POT:001"
    assert (sold["owner"], sold["custodian"], sold["listing_id"]) == (buyer, buyer, None)
    assert sold["producer"] == MERCHANT.address.hex()
    assert [entry["kind"] for entry in sold["history"]] == ["registered", "listed", "sold"]
    sale = sold["history"][-1]
    assert (sale["order_id"], sale["to"], sale["tx"]) == (
        market.pot_order,
        buyer,
        market.hash("confirm_1"),
    )
    unsold = get(market, "/items/TEA-POT:002")
    assert unsold["owner"] == MERCHANT.address.hex() and unsold["listing_id"] == market.pot


# --- accounts -------------------------------------------------------------------------------


def test_account_points_and_reputation(market: Market) -> None:
    buyer = market.node.account(BUYER.address)
    earned = (3 * TEA_PRICE + POT_PRICE) * POINTS_BPS // 10000
    assert buyer["points"] == {market.shop: earned}, "redeemed points of a rejected order come back"
    assert buyer["reputation"] is None
    merchant = market.node.account(MERCHANT.address)
    assert merchant["points"] == {}
    assert merchant["reputation"]["orders_completed"] == 2
    assert merchant["reputation"]["revenue"] == 3 * TEA_PRICE + POT_PRICE
    assert market.node.account(CARRIER.address)["reputation"] is None


def test_account_transactions_page_newest_first(market: Market) -> None:
    txs = paged(market, f"/accounts/{BUYER.address.hex()}/txs", "txs", 3)
    own = [tx for tx in market.txs.values() if tx.sender == BUYER.address]
    on_orders = [
        market.txs[name]
        for name in market.txs
        if name.split("_")[0] in ("accept", "ship", "picked", "in", "delivered", "reply", "reject")
    ]
    expected = {tx.hash.hex() for tx in own + on_orders} | {market.hash("bad_sender")}
    assert {tx["hash"] for tx in txs} == expected and len(txs) == len(expected)
    positions = [(tx["height"], tx["index"]) for tx in txs]
    assert positions == sorted(positions, reverse=True)
    for tx in txs[:5]:
        view = market.node.get_ok(f"/txs/{tx['hash']}")
        assert (tx["height"], tx["index"], tx["type"], tx["sender"]) == (
            view["height"],
            view["index"],
            view["type"],
            view["sender"],
        )
        assert tx["ok"] == view["result"]["ok"]
    failed = next(tx for tx in txs if tx["hash"] == market.hash("bad_sender"))
    assert (failed["ok"], failed["code"], failed["sender"]) == (
        False,
        "forbidden",
        BUYER2.address.hex(),
    )
    carrier = paged(market, f"/accounts/{CARRIER.address.hex()}/txs", "txs", 100)
    assert [tx["type"] for tx in carrier].count("shipment_update") == 6
    assert carrier[-1]["type"] == "role_grant"


# --- bad requests -----------------------------------------------------------------------------

UNKNOWN = "ab" * 32


@pytest.mark.parametrize(
    ("path", "status", "names"),
    [
        ("/orders/xyz", 400, "id"),
        (f"/orders/{UNKNOWN}", 404, ""),
        (f"/shops/{UNKNOWN}", 404, ""),
        (f"/shops/{UNKNOWN}/reviews", 404, ""),
        ("/shops/12/reviews", 400, "id"),
        (f"/listings/{UNKNOWN}", 404, ""),
        ("/items/bad!id", 400, "id"),
        ("/items/" + "a" * 65, 400, "id"),
        ("/items/no-such-item", 404, ""),
        ("/accounts/zz/txs", 400, "address"),
        ("/listings?limit=0", 400, "limit"),
        ("/listings?limit=101", 400, "limit"),
        ("/listings?cursor=zz", 400, "cursor"),
        ("/listings?min_price=-1", 400, "min_price"),
        ("/listings?min_price=5&max_price=1", 400, "min_price"),
        ("/listings?active=maybe", 400, "active"),
        ("/listings?q=%21%21%21", 400, "q"),
        ("/listings?shop=1", 400, "shop"),
        ("/listings?tag=" + "x" * 33, 400, "tag"),
        ("/orders?state=lost", 400, "state"),
        ("/orders?buyer=123", 400, "buyer"),
        ("/shops?owner=nothex", 400, "owner"),
        ("/shops?limit=1.5", 400, "limit"),
    ],
)
def test_bad_requests(market: Market, path: str, status: int, names: str) -> None:
    code, body = market.node.get(path)
    assert code == status and is_error_body(body), (path, code, body)
    assert body["error"]["code"] == ("invalid_query" if status == 400 else "not_found")
    assert names in body["error"]["message"]


MARKET_ROUTES = (
    "/shops",
    "/shops/{}",
    "/shops/{}/reviews",
    "/listings",
    "/listings/{}",
    "/orders",
    "/orders/{}",
    "/items/{}",
    "/accounts/{}/txs",
)
QUERY_NAMES = (
    "q",
    "tag",
    "shop",
    "min_price",
    "max_price",
    "active",
    "limit",
    "cursor",
    "buyer",
    "merchant",
    "state",
    "owner",
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    route=st.sampled_from(MARKET_ROUTES),
    segment=st.text(max_size=70),
    query=st.dictionaries(st.sampled_from(QUERY_NAMES), st.text(max_size=40), max_size=4),
)
def test_fuzz_never_a_server_error(
    market: Market, route: str, segment: str, query: dict[str, str]
) -> None:
    url = route.format(urllib.parse.quote(segment, safe="")) if "{}" in route else route
    if query:
        url += "?" + urllib.parse.urlencode(query)
    response = http_request(market.node.url + url)
    assert response.status < 500, (url, response)
    if response.status >= 400:
        assert is_error_body(response.body), (url, response)


# --- deadlines (R15, R29) ----------------------------------------------------------------------


def test_a_due_deadline_makes_a_block_with_no_transaction(tmp_path) -> None:
    fund = {MERCHANT.address: FUNDED, BUYER.address: FUNDED}
    with NodeProcess(tmp_path / "node", fund=fund, params={"accept_window_ms": 1500}) as node:
        client = Client(node)
        client.ok(
            client.tx(
                node.validator_key,
                "role_grant",
                account=MERCHANT.address,
                role="merchant",
                evidence_hash=EVIDENCE,
            )
        )
        shop = client.tx(MERCHANT, "shop_create", name="Slow Shop", points_bps=0, max_redeem_bps=0)
        listing = client.tx(
            MERCHANT, "listing_create", shop_id=shop.hash, title="Kettle", price=5_000, stock=3
        )
        client.ok(shop, listing)
        order = client.tx(
            BUYER,
            "order_place",
            listing_id=listing.hash,
            quantity=2,
            max_unit_price=5_000,
            shipping=sealed_address(MERCHANT),
        )
        [placed] = client.ok(order)
        [event] = placed["result"]["events"]
        assert (event["type"], event["escrow"]) == ("order_placed", 10_000)

        def expired() -> dict[str, Any] | None:
            view = node.get_ok(f"/orders/{order.hash.hex()}")
            return view if view["state"] == "expired" else None

        view = wait_until(
            expired, node.timeout, lambda: node.describe("the order expires by deadline")
        )
        last = view["history"][-1]
        assert (last["event"], last["tx"], last["state"]) == ("deadline", "deadline", "expired")
        assert last["height"] > placed["height"]
        assert view["escrow"] == 0 and view["refunded"] == 10_000
        assert node.account(BUYER.address)["balance"] == FUNDED - FEE, (
            "the escrow went back to the buyer"
        )
        block = node.get_ok(f"/blocks/{last['height']}")
        assert block["tx_count"] == 0, "the deadline alone made the block (R29)"
        assert node.get_ok(f"/listings/{listing.hash.hex()}")["stock"] == 3
        assert [o["id"] for o in node.get_ok("/orders?state=expired")["orders"]] == [
            order.hash.hex()
        ]
        assert node.get_ok("/orders?state=placed")["orders"] == []
        assert node.get_ok(f"/shops/{shop.hash.hex()}")["reputation"]["orders_expired"] == 1
